"""Real journal files for the journald tests, written by Debian's systemd-journal-remote from
journal export format (the format `journalctl -o export` prints; __CURSOR is the journal's)."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

JOURNAL_REMOTE_PATHS = ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
BOOT_ID = "0123456789abcdef0123456789abcdef"
MACHINE_ID = "fedcba9876543210fedcba9876543210"
T0_US = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z


def journal_remote() -> str:
    found = next((p for p in JOURNAL_REMOTE_PATHS if os.access(p, os.X_OK)), None)
    if found is None:  # not a skip: the test command installs it (scripts/install-test-deps.sh)
        pytest.fail("systemd-journal-remote is missing: apt-get install systemd-journal-remote "
                    "(scripts/install-test-deps.sh does)")
    return found


def export(entry: dict[str, str | bytes]) -> bytes:
    """One entry in export format: `NAME=value` lines; a value with a newline or bytes that are
    not UTF-8 goes in the binary form (NAME, newline, little-endian 64-bit size, the bytes)."""
    out = bytearray()
    for name, value in entry.items():
        data = value if isinstance(value, bytes) else str(value).encode()
        if b"\n" in data or isinstance(value, bytes):
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out) + b"\n"


class Journal:
    """A journal file that entries are appended to (journal-remote appends to an existing one)."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0

    def append(self, *entries: dict) -> None:
        text = self.path.with_suffix(f".{self.count}.export")
        stamped = []
        for entry in entries:
            self.count += 1
            stamped.append({"__REALTIME_TIMESTAMP": T0_US + self.count * 1_000_000,
                            "__MONOTONIC_TIMESTAMP": self.count * 1_000_000, "_BOOT_ID": BOOT_ID,
                            "_MACHINE_ID": MACHINE_ID, "_HOSTNAME": "gpu-node-1", **entry})
        text.write_bytes(b"".join(export(e) for e in stamped))
        run = subprocess.run([journal_remote(), f"--output={self.path}", str(text)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr


def kernel(message: str | bytes, priority: int = 3) -> dict:
    return {"_TRANSPORT": "kernel", "SYSLOG_IDENTIFIER": "kernel", "PRIORITY": str(priority), "MESSAGE": message}


def unit_line(unit: str, message: str, pid: int = 4242, priority: int = 6) -> dict:
    return {"_TRANSPORT": "stdout", "_SYSTEMD_UNIT": unit, "_PID": str(pid), "_COMM": "python3",
            "SYSLOG_IDENTIFIER": "python3", "PRIORITY": str(priority), "MESSAGE": message}


XID = "NVRM: Xid (PCI:0000:3b:00): 79, pid=48213, name=python, GPU has fallen off the bus."
OOM = ("Out of memory: Killed process 48213 (python) total-vm:187334532kB, anon-rss:120334112kB, "
       "file-rss:0kB, shmem-rss:8kB, UID:1000 pgtables:243712kB oom_score_adj:0")
NAN_STEP = '{"step": 120, "loss": NaN, "learning_rate": 0.0002, "message": "train step", "logger": "trainer"}'


def collect(reader, count: int, timeout: float = 30.0) -> list:
    """Read until `count` entries came (journalctl --follow never ends by itself)."""
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got += reader.read(timeout=0.2)
    assert len(got) >= count, f"only {len(got)} of {count} entries within {timeout} s: {got}"
    return got


def require_journalctl() -> None:
    assert shutil.which("journalctl"), "journalctl (systemd) is needed by these tests"
