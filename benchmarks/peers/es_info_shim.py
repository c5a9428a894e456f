"""A pass-through HTTP proxy in front of the test Elasticsearch that also answers `GET /`.

Why: the integ-test-zip distribution (the core server without x-pack, which is what the tests
and benchmarks run) has no `GET /` info endpoint (it answers 405), and ElastAlert2 asks for it
at start-up to learn the server version (`client.info()['version']['number']`). Everything
else is forwarded byte for byte to the real node; the info body is built from the node's own
`GET /_nodes/_local` answer, so the version ElastAlert2 sees is the node's.

    python es_info_shim.py --upstream http://127.0.0.1:9200 --port-file FILE

It listens on 127.0.0.1 on a free port and writes that port to FILE once it serves. Standard
library only. It adds well under a millisecond per request on loopback, which the benchmark
counts against ElastAlert2's detection time (in its favour it is negligible beside run_every).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade"}


def info_body(upstream: str) -> bytes:
    with urllib.request.urlopen(f"{upstream}/_nodes/_local", timeout=30) as resp:
        nodes = json.loads(resp.read())
    node = next(iter(nodes["nodes"].values()))
    return json.dumps({
        "name": node.get("name"), "cluster_name": nodes.get("cluster_name"),
        "cluster_uuid": "_na_",
        "version": {"number": node["version"], "build_flavor": "default", "build_type": "zip",
                    "build_hash": node.get("build_hash", ""), "lucene_version": "",
                    "minimum_wire_compatibility_version": "", "minimum_index_compatibility_version": ""},
        "tagline": "You Know, for Search",
    }).encode()


def make_handler(upstream: str, info: bytes):
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: ElastAlert2 polls once a second
            pass

        def _forward(self) -> None:
            if self.command in ("GET", "HEAD") and self.path in ("/", ""):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-elastic-product", "Elasticsearch")
                self.send_header("Content-Length", str(len(info)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(info)
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    return Handler


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    upstream = args.upstream.rstrip("/")
    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            pass  # a client that hangs up mid-request (ElastAlert2 stopped) is no news

    server = Server(("127.0.0.1", 0), make_handler(upstream, info_body(upstream)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
