"""Shipping whole files (`faultwarden ship PATH...`), and the file identity document ids use.

A file's identity must survive a rename (rotation moves `train.log` to `train.log.1`) and must
not be taken over by a new file that happens to get a reused inode: device and inode, plus a
fingerprint of the file's first line (complete once written, unlike the rest of a growing file).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

FINGERPRINT_BYTES = 1024


def file_identity(path: str | os.PathLike) -> str:
    st = os.stat(path)
    with open(path, "rb") as fh:
        head = fh.read(FINGERPRINT_BYTES)
    first_line = head.split(b"\n", 1)[0] if b"\n" in head else head
    digest = hashlib.blake2b(first_line, digest_size=8).hexdigest()
    return f"{st.st_dev:x}:{st.st_ino:x}:{digest}"


@dataclass
class FileReport:
    path: str
    events: int = 0
    error: str | None = None


@dataclass
class ShipReport:
    files: list[FileReport] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(f.events for f in self.files)


def ship_files(sink: Any, paths: Iterable[str], read: Callable[[str], Iterator[dict]] | None = None) -> ShipReport:
    """Submit every event of every file to the sink (the caller closes the sink to wait)."""
    if read is None:
        from faultwarden.daemon.parse import read_file as read
    report = ShipReport()
    for path in paths:
        entry = FileReport(str(path))
        report.files.append(entry)
        try:
            file_id = file_identity(path)
            for event in read(str(path)):
                sink.submit(event, file_id)
                entry.events += 1
        except OSError as exc:
            entry.error = f"{path}: {exc.strerror or exc}"
    return report
