"""The local receiver both alerting tools notify: an HTTP server on 127.0.0.1 that notes when
each notification for each trial arrived.

Paths tell the senders apart (/faultwarden, /elastalert); trials are found in the POSTed body
by their marker (`bench-trial-...`, the run id of the fault line), which both payloads carry
(faultwarden's in the incident's group, ElastAlert2's in the matched document). Only the first
arrival per (sender, marker) counts: a later re-alert of an old trial changes nothing.
"""
from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MARKER = re.compile(rb"bench-(?:trial|warmup)-[A-Za-z0-9]+")


class Webhook:
    def __init__(self):
        self.arrivals: dict[tuple[str, str], float] = {}
        self.posts = 0
        self._cond = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()  # the moment the notification is in: before we answer
                hook._record(self.path.strip("/").split("?")[0], body, now)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a sender that hangs up (ElastAlert2 stopped between phases) is no news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        self.thread.start()

    def url(self, sender: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{sender}"

    def _record(self, sender: str, body: bytes, at: float) -> None:
        with self._cond:
            self.posts += 1
            for marker in set(MARKER.findall(body)):
                self.arrivals.setdefault((sender, marker.decode()), at)
            self._cond.notify_all()

    def wait(self, senders: set[str], marker: str, timeout: float) -> dict[str, float | None]:
        """Arrival times of `marker` from each sender, None for those that did not come in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.wait_for(lambda: all((s, marker) in self.arrivals for s in senders),
                                max(0.0, deadline - time.monotonic()))
            return {s: self.arrivals.get((s, marker)) for s in senders}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
