"""The fingerprint of a checkpoint: sha256 and size of its file, or of the chosen files of its folder.

The digest is reproducible with coreutils, so `faultwarden checkpoints verify` (and a person) can
check a checkpoint without this module:

- a file: the sha256 of its bytes (what ``sha256sum FILE`` prints);
- a folder: the sha256 of the manifest ``"<sha256 of file>  <relative path>\\n"`` per file, sorted
  by relative path (byte order), i.e. ``cd DIR && sha256sum $(LC_ALL=C ls ...) | sha256sum``.

Pure standard library: it runs inside the training job.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable


@dataclass(frozen=True)
class CheckpointDigest:
    path: str
    sha256: str
    size_bytes: int
    files: tuple[str, ...]  # relative paths that went into the digest (empty for a single file)


def file_sha256(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def select(folder: str | os.PathLike[str], patterns: Iterable[str] | None = None) -> list[str]:
    """Relative paths (``/``-separated, sorted) of the regular files under ``folder`` whose name
    matches one of ``patterns`` (all files when ``patterns`` is None)."""
    root = Path(folder)
    patterns = list(patterns) if patterns is not None else None
    chosen = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            full = Path(dirpath, name)
            if not full.is_file():
                continue
            if patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns):
                chosen.append(full.relative_to(root).as_posix())
    return sorted(chosen)


def digest(path: str | os.PathLike[str], files: Iterable[str] | None = None) -> CheckpointDigest:
    """Fingerprint ``path`` (a file, or a folder and optionally which of its files, relative)."""
    return open_checkpoint(path, files).digest()


class OpenCheckpoint:
    """A checkpoint's files, opened, to be fingerprinted later (on another thread).

    Open files stay readable after they are deleted (POSIX), so a checkpoint that the job's
    rotation (HF ``save_total_limit``) removes while it waits is still hashed whole, as saved.
    """

    def __init__(self, path: str, members: list[tuple[str, IO[bytes]]], single: bool):
        self.path = path
        self._members = members   # (relative name, open file); one ("", file) for a single file
        self._single = single

    def digest(self) -> CheckpointDigest:
        """Read every file once (and close it): the digest as ``digest()`` defines it."""
        try:
            if self._single:
                (_, f), = self._members
                return CheckpointDigest(self.path, hashlib.file_digest(f, "sha256").hexdigest(),
                                        os.fstat(f.fileno()).st_size, ())
            manifest = hashlib.sha256()
            size = 0
            for name, f in self._members:
                manifest.update(f"{hashlib.file_digest(f, 'sha256').hexdigest()}  {name}\n".encode())
                size += os.fstat(f.fileno()).st_size
            return CheckpointDigest(self.path, manifest.hexdigest(), size, tuple(n for n, _ in self._members))
        finally:
            self.close()

    def close(self) -> None:
        for _, f in self._members:
            f.close()


def open_checkpoint(path: str | os.PathLike[str], files: Iterable[str] | None = None) -> OpenCheckpoint:
    """Open the files ``digest`` would read; raises OSError (FileNotFoundError) as ``digest`` does."""
    p = Path(path)
    if p.is_file():
        return OpenCheckpoint(str(p), [("", open(p, "rb"))], True)
    if not p.is_dir():
        raise FileNotFoundError(f"checkpoint {str(p)!r} does not exist")
    names = sorted(files) if files is not None else select(p)
    if not names:
        raise FileNotFoundError(f"checkpoint folder {str(p)!r} has no files to fingerprint")
    members: list[tuple[str, IO[bytes]]] = []
    try:
        for name in names:
            members.append((name, open(p / name, "rb")))
    except OSError:
        for _, f in members:
            f.close()
        raise
    return OpenCheckpoint(str(p), members, False)
