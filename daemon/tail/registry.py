"""The offsets registry: where each tailed file's two cursors stand, in SQLite under the state dir.

SQLite in WAL mode with synchronous=NORMAL: a crash of the daemon never corrupts it and never
loses a committed transaction; a power cut may lose the last few commits (then a few lines are
detected or shipped again, never skipped, because cursors only move forward in small steps).
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

SCHEMA_VERSION = 2   # 2: real_path
FILE_NAME = "tail.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    file_id TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    path TEXT NOT NULL,
    fp_len INTEGER NOT NULL,      -- how many leading bytes the fingerprint covers (<= 1024)
    fp_hash BLOB NOT NULL,        -- sha256 of those bytes
    detect_offset INTEGER NOT NULL,
    detect_line INTEGER NOT NULL, -- lines before detect_offset
    ship_offset INTEGER NOT NULL, -- acknowledged by the sink
    real_path TEXT                -- where a symlink's bytes live (NULL: not a symlink)
);
CREATE INDEX IF NOT EXISTS files_inode ON files (dev, ino);
"""


class RegistryError(Exception):
    """The registry file cannot be used; the message says which file and what to do."""


@dataclass(frozen=True, slots=True)
class Record:
    file_id: str
    dev: int
    ino: int
    path: str
    fp_len: int
    fp_hash: bytes
    detect_offset: int
    detect_line: int
    ship_offset: int
    real_path: str | None = None


class Registry:
    """One connection, used under the tailer's lock (hence check_same_thread=False)."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / FILE_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RegistryError(
                    f"{self.path}: written by a newer faultwarden (schema {version}, this one reads "
                    f"{SCHEMA_VERSION}); upgrade, or move the file away to read every file again")
            self._db.executescript(_SCHEMA)
            if version == 1:   # a file found after a restart may live in its symlink's target folder
                self._db.execute("ALTER TABLE files ADD COLUMN real_path TEXT")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise RegistryError(
                f"{self.path}: not a usable offsets registry ({e}); move it away to start over "
                "(every file is then read again from its start)") from e

    def load(self) -> list[Record]:
        rows = self._db.execute(
            "SELECT file_id, dev, ino, path, fp_len, fp_hash, detect_offset, detect_line, ship_offset, "
            "real_path FROM files ORDER BY rowid").fetchall()
        return [Record(*row) for row in rows]

    def save(self, records: Iterable[Record]) -> None:
        """Write whole rows, all in one transaction."""
        rows = [(r.file_id, r.dev, r.ino, r.path, r.fp_len, r.fp_hash, r.detect_offset,
                 r.detect_line, r.ship_offset, r.real_path) for r in records]
        if not rows:
            return
        with self._transaction():
            self._db.executemany(
                "INSERT INTO files (file_id, dev, ino, path, fp_len, fp_hash, detect_offset, "
                "detect_line, ship_offset, real_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (file_id) DO UPDATE SET "
                "dev=excluded.dev, ino=excluded.ino, path=excluded.path, fp_len=excluded.fp_len, "
                "fp_hash=excluded.fp_hash, detect_offset=excluded.detect_offset, "
                "detect_line=excluded.detect_line, ship_offset=excluded.ship_offset, "
                "real_path=excluded.real_path", rows)

    def ship(self, file_id: str, offset: int) -> None:
        """Move only the shipping cursor (the detection cursor has its own commit point)."""
        self._db.execute("UPDATE files SET ship_offset=? WHERE file_id=?", (offset, file_id))

    def forget(self, file_ids: Iterable[str]) -> None:
        ids = [(i,) for i in file_ids]
        if ids:
            with self._transaction():
                self._db.executemany("DELETE FROM files WHERE file_id=?", ids)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self):
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
