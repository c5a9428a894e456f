"""Helpers for the tailer's tests: real files, real inotify, a real SQLite registry."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from faultwarden.daemon.config import Source
from faultwarden.daemon.tail import Line, Tailer

DEADLINE_S = 30.0


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)


def texts(lines: list[Line]) -> list[str]:
    return [line.text for line in lines]


class Harness:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.state = tmp_path / "state"
        self.tailers: list[Tailer] = []

    def tailer(self, *patterns: str | Path, **options) -> Tailer:
        options.setdefault("poll_s", 0.2)
        options.setdefault("partial_flush_s", 30.0)
        t = Tailer([Source(paths=[str(p) for p in patterns])], self.state, **options)
        self.tailers.append(t)
        return t

    def registry_rows(self) -> dict[str, tuple]:
        db = sqlite3.connect(self.state / "tail.sqlite")
        try:
            rows = db.execute("SELECT file_id, path, fp_len, detect_offset, ship_offset FROM files").fetchall()
        finally:
            db.close()
        return {row[0]: row[1:] for row in rows}

    def close(self) -> None:
        for t in self.tailers:
            t.close()


def read_until(t: Tailer, done, *, what: str = "lines") -> list[Line]:
    """Read until `done(lines so far)` holds; fail after DEADLINE_S (never on a fixed sleep)."""
    got: list[Line] = []
    deadline = time.monotonic() + DEADLINE_S
    while not done(got):
        assert time.monotonic() < deadline, f"timed out waiting for {what}; got {texts(got)}"
        got += t.read(0.2)
    return got


def read_texts(t: Tailer, expected: list[str]) -> list[Line]:
    """Read until exactly `expected` (in order) came out for detection; nothing more."""
    got = read_until(t, lambda ls: len([x for x in ls if x.detect]) >= len(expected), what=str(expected))
    assert texts([x for x in got if x.detect]) == expected
    return got
