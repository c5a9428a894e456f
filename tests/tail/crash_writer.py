"""The job side of the crash test: a process that appends numbered lines to three logs and
rotates each in its own way, until a stop file appears.

    python crash_writer.py LOGS_DIR REGISTRY SEED STOP_FILE

Streams (one log each, lines `<stream> <seq> <payload>`, seq from 0 without gaps):
- `r` → LOGS/train.log, rotated by rename (logrotate's default): renamed to train.log.N, a new
  train.log made, a few more lines written to the old handle (the job has not reopened yet);
- `c` → LOGS/serve.log, rotated by copytruncate: copied to serve.log.N, truncated in place, the
  job writing on through its O_APPEND handle;
- `s` → LOGS/current.log, a symlink to LOGS/targets/gen-N.txt, turned to a new target
  atomically (os.replace), a few more lines to the old target first.
Some lines are written in two pieces (a multibyte character may be cut), so the tailer sees
lines without their newline yet. None of the rotated names match the tailer's `*.log`.

Before each rotation the writer waits until the tailer's registry knows the file (a row for its
inode whose fingerprint matches the file's first bytes), and before a copytruncate until that
row's detection cursor is at the file's end. A file rotated before any tailer saw it, or
truncated before its lines were read, cannot be followed by any tailer (the lines are gone from
every path it watches): the writer keeps out of those two cases so the outcome is determined.

At the stop file it prints `{"r": lines, "c": lines, "s": lines}` and exits 0; a wait that takes
longer than BARRIER_S ends it with exit code 3 and says why on stderr.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import sys
import time

BARRIER_S = 60.0
ALPHABET = "abcdefghijklmnopqrstuvwxyz 0123456789 é→€😀{}[]\"'=:,|"


def line_text(stream: str, seq: int) -> str:
    """The text of line `seq` of `stream` (no newline); the checker rebuilds it from the two."""
    rng = random.Random(f"{stream}:{seq}")
    size = rng.randrange(3000, 6000) if rng.random() < 0.005 else rng.randrange(0, 120)
    return f"{stream} {seq:07d} " + "".join(rng.choices(ALPHABET, k=size))


class Registry:
    """Reads the tailer's SQLite registry (read-only; the tailer may be dead or restarting)."""

    def __init__(self, path: str):
        self.path = path
        self.db = None

    def row(self, st: os.stat_result):
        try:
            if self.db is None:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1.0)
            return self.db.execute(
                "SELECT fp_len, fp_hash, detect_offset FROM files WHERE dev=? AND ino=? "
                "ORDER BY rowid DESC LIMIT 1", (st.st_dev, st.st_ino)).fetchone()
        except sqlite3.Error:
            self.db = None   # not made yet, or caught mid-recovery: ask again
            return None

    def wait(self, fd: int, *, caught_up: bool, what: str) -> None:
        deadline = time.monotonic() + BARRIER_S
        while True:
            st = os.fstat(fd)
            row = self.row(st)
            if row is not None:
                fp_len, fp_hash, detect_offset = row
                head = os.pread(fd, fp_len, 0)
                if (len(head) == fp_len and hashlib.sha256(head).digest() == fp_hash
                        and (not caught_up or detect_offset == st.st_size)):
                    return
            if time.monotonic() > deadline:
                print(f"crash_writer: {what}: the tailer's registry never got to {row} "
                      f"(size {st.st_size})", file=sys.stderr)
                sys.exit(3)
            time.sleep(0.01)


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def open_log(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)


class Stream:
    def __init__(self, name: str, logs: str, registry: Registry, rng: random.Random):
        self.name, self.logs, self.registry, self.rng = name, logs, registry, rng
        self.seq = 0
        self.rotations = 0
        self.until_rotation = rng.randrange(20, 60)   # bursts
        self.fd = open_log(self.first_path())

    def write_line(self, fd: int | None = None, split: bool = True) -> None:
        data = (line_text(self.name, self.seq) + "\n").encode()
        self.seq += 1
        fd = self.fd if fd is None else fd
        if split and self.rng.random() < 0.1:
            cut = self.rng.randrange(1, len(data))
            write_all(fd, data[:cut])
            time.sleep(0.002)
            write_all(fd, data[cut:])
        else:
            write_all(fd, data)

    def burst(self) -> None:
        for _ in range(self.rng.randrange(1, 9)):
            self.write_line()
        self.until_rotation -= 1
        if self.until_rotation <= 0:
            self.rotations += 1
            self.rotate()
            self.until_rotation = self.rng.randrange(20, 60)

    def switch_to(self, new_fd: int, rotate) -> None:
        """Rotate (`rotate()`), then the job writes a few more lines to the file it still has
        open before it turns to `new_fd`."""
        old, self.fd = self.fd, new_fd
        rotate()
        for _ in range(self.rng.randrange(1, 4)):
            self.write_line(old, split=False)
        os.close(old)


class Renamed(Stream):
    def first_path(self) -> str:
        return os.path.join(self.logs, "train.log")

    def rotate(self) -> None:
        path = self.first_path()
        self.registry.wait(self.fd, caught_up=False, what=f"rename {path}")
        os.rename(path, f"{path}.{self.rotations}")
        self.switch_to(open_log(path), lambda: None)


class CopyTruncated(Stream):
    def first_path(self) -> str:
        return os.path.join(self.logs, "serve.log")

    def rotate(self) -> None:
        path = self.first_path()
        self.registry.wait(self.fd, caught_up=True, what=f"copytruncate {path}")
        shutil.copyfile(path, f"{path}.{self.rotations}")
        os.ftruncate(self.fd, 0)


class Symlinked(Stream):
    def first_path(self) -> str:
        os.makedirs(os.path.join(self.logs, "targets"), exist_ok=True)
        target = self.target(0)
        os.symlink(target, os.path.join(self.logs, "current.log"))
        return target

    def target(self, n: int) -> str:
        return os.path.join(self.logs, "targets", f"gen-{n}.txt")

    def rotate(self) -> None:
        self.registry.wait(self.fd, caught_up=False, what="symlink swap")
        target = self.target(self.rotations)
        tmp = os.path.join(self.logs, "current.tmp")

        def turn_the_link():
            os.symlink(target, tmp)
            os.replace(tmp, os.path.join(self.logs, "current.log"))
        self.switch_to(open_log(target), turn_the_link)


def main(logs: str, registry_path: str, seed: str, stop_file: str) -> int:
    rng = random.Random(int(seed))
    registry = Registry(registry_path)
    streams = [cls(name, logs, registry, rng) for name, cls in
               (("r", Renamed), ("c", CopyTruncated), ("s", Symlinked))]
    while not os.path.exists(stop_file):
        rng.choice(streams).burst()
        time.sleep(rng.uniform(0.001, 0.006))
    print(json.dumps({s.name: s.seq for s in streams}), flush=True)
    print(json.dumps({s.name: s.rotations for s in streams}), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
