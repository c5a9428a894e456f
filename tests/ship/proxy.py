"""A small HTTP proxy in front of the real Elasticsearch node, to provoke what a healthy
single node will not do on demand, deterministically:

- an outage: the port is bound but not listening until `start()` (connections are refused),
- per-document 429s: chosen documents of a `_bulk` are answered 429 the first time they are
  seen, and are NOT forwarded (so the retry is what stores them, not a 409),
- whole-request failures: the next `_bulk` requests answered with given statuses (503...), or
  every request with one status (`fail_all`, e.g. 401 for a wrong password).

Everything else is forwarded unchanged, so the sink under test talks to the real node.
"""
from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit


class EsProxy:
    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.reject_once: Callable[[str], bool] = lambda _id: False
        self.fail_bulk: list[int] = []  # statuses for the next _bulk requests, whole
        self.fail_all: int | None = None
        self.seen: dict[str, int] = {}  # document id -> times it reached the proxy
        self.bulk_requests = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                is_bulk = self.path.split("?")[0].endswith("/_bulk") and self.command in ("POST", "PUT")
                with proxy.lock:
                    forced = proxy.fail_all
                    if forced is None and is_bulk and proxy.fail_bulk:
                        forced = proxy.fail_bulk.pop(0)
                if forced is not None:
                    return self._reply(forced, json.dumps(
                        {"error": {"type": "forced_by_test", "reason": f"proxy answered {forced}"},
                         "status": forced}).encode())
                if is_bulk:
                    return self._bulk(body)
                status, ctype, data = proxy.forward(self.command, self.path, body, self.headers)
                self._reply(status, data, ctype)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def _bulk(self, body: bytes):
                lines = body.splitlines()
                pairs = [(lines[i], lines[i + 1]) for i in range(0, len(lines), 2)]
                forward, plan = [], []
                with proxy.lock:
                    proxy.bulk_requests += 1
                    for action, source in pairs:
                        _id = next(iter(json.loads(action).values())).get("_id")
                        proxy.seen[_id] = proxy.seen.get(_id, 0) + 1
                        if proxy.seen[_id] == 1 and proxy.reject_once(_id):
                            plan.append(("reject", _id))
                        else:
                            plan.append(("forward", _id))
                            forward += [action, source]
                items = []
                if forward:
                    status, ctype, data = proxy.forward("POST", self.path, b"\n".join(forward) + b"\n",
                                                        self.headers)
                    if status != 200:
                        return self._reply(status, data, ctype)
                    items = json.loads(data)["items"]
                answered = iter(items)
                out = []
                for what, _id in plan:
                    if what == "forward":
                        out.append(next(answered))
                    else:
                        out.append({"create": {"_id": _id, "status": 429, "error": {
                            "type": "es_rejected_execution_exception", "reason": "rejected by the test proxy"}}})
                errors = any(next(iter(i.values())).get("status", 200) >= 300 for i in out)
                self._reply(200, json.dumps({"took": 1, "errors": errors, "items": out}).encode())

            def _reply(self, status: int, data: bytes, ctype: str = "application/json"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

        # Bound now, listening only from start(): until then connections are refused, and the
        # port cannot be taken by anyone else in between.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.daemon_threads = True
        self.server.server_bind()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def forward(self, method: str, path: str, body: bytes, headers) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            pass_on = {k: v for k, v in headers.items() if k.lower() in ("content-type", "accept")}
            conn.request(method, path, body=body or None, headers=pass_on)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", "application/json"), resp.read()
        finally:
            conn.close()

    def start(self) -> "EsProxy":
        self.server.server_activate()
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
        self.server.server_close()
