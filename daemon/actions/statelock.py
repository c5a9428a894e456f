"""One daemon per state dir: an advisory lock (flock) on `<state_dir>/faultwarden.lock`.

The lock file holds the pid of its owner so the second daemon can say who is in the way. The
kernel drops the lock when the owner dies, so a stale file never blocks a new daemon.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "faultwarden.lock"


class StateDirBusy(Exception):
    pass


class StateDirLock:
    def __init__(self, state_dir: str | Path):
        self.dir = Path(state_dir)
        self.path = self.dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "StateDirLock":
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StateDirBusy(
                f"state dir {self.dir} is in use by another faultwarden (pid {holder}); stop that one, "
                f"or give this one its own state_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (its pid is only a hint)
            self._fd = None

    def __enter__(self) -> "StateDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
