"""A `faultwarden run` process in service mode, under a NOTIFY_SOCKET the test binds."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


class Daemon:
    def __init__(self, tmp_path, config):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(tmp_path / "notify.sock"))
        self.sock.settimeout(1)
        env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
        self.proc = subprocess.Popen([sys.executable, "-m", "faultwarden.daemon.cli", "run", "--config", str(config)],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.messages: list[str] = []

    def wait_message(self, prefix: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.messages:
                if m.startswith(prefix):
                    return m
            assert self.proc.poll() is None, self.proc.stdout.read().decode()
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass
        raise AssertionError(f"no {prefix!r} from the daemon; got {self.messages}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.sock.setblocking(False)
        while True:  # what it said on the way out
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                break
        self.sock.close()
        return code
