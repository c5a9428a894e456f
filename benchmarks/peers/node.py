"""The Elasticsearch node every comparison uses, and small calls against it.

One node serves all four comparisons, so every tool meets the same Elasticsearch: 8.19, because
ElastAlert2's pinned client (elasticsearch-py 7.10) speaks to 8.x, and faultwarden's 8.x client
to 8.x and 9.x alike. It is scripts/es.py's test node (integ-test-zip from Maven) with a 1 GB
heap and the full JIT: the test default `-XX:TieredStopAtLevel=1` starts faster but indexes at
about half the speed, which would make every shipper look alike.
"""
from __future__ import annotations

import importlib.util
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, http_json, log

ES_VERSION = "8.19.21"


def _es_module():
    spec = importlib.util.spec_from_file_location("fw_es_script", ROOT / "scripts/es.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@dataclass
class Node:
    url: str
    workdir: Path | None  # None: a node we were given, not ours to stop
    pid: int | None
    version: str

    @classmethod
    def start(cls, workdir: Path, version: str = ES_VERSION) -> "Node":
        es = _es_module()
        began = time.monotonic()
        url = es.start(workdir, version, timeout=600, heap="1g", java_opts="")
        pid = int((workdir / "node.pid").read_text())
        log(f"Elasticsearch {version} up at {url} in {time.monotonic() - began:.0f} s")
        return cls(url, workdir, pid, node_version(url))

    @classmethod
    def given(cls, url: str) -> "Node":
        return cls(url.rstrip("/"), None, None, node_version(url))

    def stop(self) -> None:
        if self.workdir is not None:
            _es_module().stop(self.workdir)

    # --- small calls ---------------------------------------------------------------------
    def count(self, index: str) -> int:
        try:
            return int(http_json(f"{self.url}/{index}/_count", timeout=30).get("count", 0))
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 503):  # not created yet / its shard not yet started
                return 0
            raise

    def refresh(self, index: str) -> None:
        try:
            http_json(f"{self.url}/{index}/_refresh", method="POST", timeout=120)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def delete_prefix(self, prefix: str) -> None:
        """Drop what a run wrote (indices and faultwarden's templates), so the next run meets
        the same empty node."""
        for path in (f"/{prefix}*?expand_wildcards=all", f"/_index_template/{prefix}*"):
            req = urllib.request.Request(self.url + path, method="DELETE")
            try:
                urllib.request.urlopen(req, timeout=120).read()
            except urllib.error.HTTPError as exc:
                if exc.code != 404:  # e.g. a given node with action.destructive_requires_name
                    log(f"could not delete {path} ({exc.code}): left on the node")

    def settle(self) -> None:
        """Flush, then let merges finish, so one run's leftovers don't bill the next."""
        try:
            http_json(f"{self.url}/_flush", method="POST", timeout=300)
        except urllib.error.HTTPError:
            pass
        time.sleep(2)


def node_version(url: str) -> str:
    nodes = http_json(f"{url.rstrip('/')}/_nodes/_local", timeout=30)
    return next(iter(nodes["nodes"].values()))["version"]


def es_cpu_s(node: Node) -> float | None:
    """CPU seconds the node's JVM used so far (None for a node we did not start)."""
    if node.pid is None:
        return None
    from common import tree_cpu_s

    return tree_cpu_s(node.pid)

