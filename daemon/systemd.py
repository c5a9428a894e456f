"""systemd's notify protocol, by hand: one datagram per state to $NOTIFY_SOCKET (no library).

READY=1 once sources, rules and sinks are up; WATCHDOG=1 at half of WatchdogSec; STATUS= lines
with events/s and open incidents; STOPPING=1 on the way out. Outside systemd all of it is a no-op.
"""
from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, environ=os.environ):
        address = environ.get("NOTIFY_SOCKET")
        if address and address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self.address = address
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        ours = pid is None or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec and ours else None
        self._last_ping = 0.0
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if address else None
        if self._sock is not None:
            self._sock.setblocking(False)  # a reader that stopped reading must not stall the daemon

    def send(self, *fields: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError:
            pass  # systemd going away must not take the daemon with it

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *( [f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def maybe_ping(self, now: float | None = None) -> None:
        """WATCHDOG=1, at most every half WatchdogSec; cheap to call every loop."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
