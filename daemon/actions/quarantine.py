"""Move checkpoints aside instead of deleting them, and put them back on request.

A restore rolls the job back to an older checkpoint; the newer ones (after the fault, or
unhealthy) must not be picked up again by the job's own "resume from the latest" logic, but they
are evidence and may be wanted later. So they move to `<dir>/.faultwarden-quarantine/<batch>/`
(a rename, same filesystem) and `manifest.json` there records each move. `undo` puts the latest
batch back, except where the job has since written a checkpoint of the same name.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from faultwarden.daemon.actions.checkpoints import QUARANTINE_DIR, Checkpoint
from faultwarden.daemon.actions.integrity import SIDECAR_SUFFIX

MANIFEST = "manifest.json"


@dataclass
class Move:
    source: str
    target: str


@dataclass
class Batch:
    id: str
    at: float
    reason: str
    moves: list[Move] = field(default_factory=list)
    undone: bool = False


@dataclass
class UndoResult:
    batch: Batch
    restored: list[str]
    kept: list[str]  # quarantined copies left in place, with why


def quarantine(checkpoints: Iterable[Checkpoint], reason: str, batch_id: str | None = None) -> Batch:
    """Move the checkpoints (and their sha256 sidecars) into their folder's quarantine."""
    batch = Batch(batch_id or f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}", time.time(), reason)
    by_dir: dict[Path, list[Move]] = {}
    for ckpt in checkpoints:
        target_dir = ckpt.dir / QUARANTINE_DIR / batch.id
        target_dir.mkdir(parents=True, exist_ok=True)
        paths = [ckpt.path]
        sidecar = ckpt.path.with_name(ckpt.path.name + SIDECAR_SUFFIX)
        if ckpt.kind == "file" and sidecar.exists():
            paths.append(sidecar)
        for path in paths:
            target = target_dir / path.name
            os.rename(path, target)
            move = Move(str(path), str(target))
            batch.moves.append(move)
            by_dir.setdefault(ckpt.dir, []).append(move)
    for folder, moves in by_dir.items():
        _write(folder, _read(folder) + [Batch(batch.id, batch.at, reason, moves)])
    return batch


def batches(dirs: Iterable[Path]) -> list[Batch]:
    """Every quarantine batch in the folders, oldest first (one batch may span folders)."""
    merged: dict[str, Batch] = {}
    for folder in dirs:
        for b in _read(Path(folder)):
            if b.id in merged:
                merged[b.id].moves += b.moves
                merged[b.id].undone = merged[b.id].undone and b.undone
            else:
                merged[b.id] = b
    return sorted(merged.values(), key=lambda b: b.at)


def undo(dirs: Iterable[Path], batch_id: str | None = None) -> UndoResult | None:
    """Put the latest batch not yet undone (or `batch_id`) back where it came from."""
    dirs = [Path(d) for d in dirs]
    pending = [b for b in batches(dirs) if not b.undone and (batch_id is None or b.id == batch_id)]
    if not pending:
        return None
    batch = pending[-1]
    restored, kept = [], []
    for move in batch.moves:
        source, target = Path(move.source), Path(move.target)
        if source.exists():
            kept.append(f"{target}: {source} exists again (saved after the restore); left in quarantine")
        elif not target.exists():
            kept.append(f"{target}: no longer in quarantine")
        else:
            os.rename(target, source)
            restored.append(str(source))
    for folder in dirs:
        entries = _read(folder)
        if any(b.id == batch.id for b in entries):
            for b in entries:
                if b.id == batch.id:
                    b.undone = True
            _write(folder, entries)
    return UndoResult(batch, restored, kept)


def _read(folder: Path) -> list[Batch]:
    path = folder / QUARANTINE_DIR / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    return [Batch(b["id"], b["at"], b["reason"], [Move(**m) for m in b["moves"]], b.get("undone", False))
            for b in data.get("batches", [])]


def _write(folder: Path, entries: list[Batch]) -> None:
    path = folder / QUARANTINE_DIR / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"batches": [asdict(b) for b in entries]}, indent=1))
    os.replace(tmp, path)
