"""Fixtures for the shipping tests: the nodes (9.x from the session, an 8.19.x node this package
starts), a unique index prefix per test (cleaned up after), settings pointing at a node, and a
proxy in front of it for outages and 429s.

The 8.19 node is ours: it runs with a one-thread write pool and a one-slot write queue, so a
flood of concurrent bulk requests gets real 429s (es_rejected_execution_exception) from it, and
the outage test may freeze it (SIGSTOP) for a while. Even the daemon's two senders meet a 429
there now and then (a bulk request takes a write thread to coordinate and one per shard): every
test on it also shows that shipping shrugs them off.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from faultwarden.daemon.config import Elasticsearch as Settings

from .proxy import EsProxy

ES8_VERSION = os.environ.get("FAULTWARDEN_TEST_ES8_VERSION", "8.19.21")
TINY_WRITE_POOL = {"thread_pool.write.size": "1", "thread_pool.write.queue_size": "1"}


@dataclass
class Node:
    """A real Elasticsearch node for the tests. `workdir` is set when this session started it
    (scripts/es.py's layout: node.pid is the process group), so a test may pause it."""

    url: str
    client: object
    version: str
    workdir: Path | None = None
    _paused: bool = field(default=False, repr=False)

    @property
    def owned(self) -> bool:
        return self.workdir is not None

    def pause(self) -> None:
        """Freeze the node (SIGSTOP to its process group): its port stays open, nothing answers."""
        os.killpg(self._pid(), signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        os.killpg(self._pid(), signal.SIGCONT)
        self._paused = False

    @contextlib.contextmanager
    def paused(self):
        self.pause()
        try:
            yield self
        finally:
            if self._paused:
                self.resume()

    def _pid(self) -> int:
        if self.workdir is None:
            raise RuntimeError(f"the node at {self.url} was not started by this session; it cannot be paused")
        return int((self.workdir / "node.pid").read_text())

    def delete_prefix(self, prefix: str) -> None:
        es = self.client.options(ignore_status=404)
        es.indices.delete(index=f"{prefix}-*", expand_wildcards="all")
        for template in ("events", "incidents"):
            es.indices.delete_index_template(name=f"{prefix}-{template}")


def _node_version(client) -> str:
    (node,) = client.nodes.info(node_id="_local")["nodes"].values()
    return node["version"]


@pytest.fixture(scope="session")
def es8(es_script, unavailable, nodes_seen):
    """An Elasticsearch 8.19 node with a tiny write pool, started (and stopped) by this session.

    FAULTWARDEN_TEST_ES8_WORKDIR: a node already started there with scripts/es.py (`start
    --version 8.19.x`, FAULTWARDEN_TEST_ES_SETTINGS with the tiny write pool), for a fast dev loop.
    """
    from elasticsearch import Elasticsearch

    script = es_script
    reuse = os.environ.get("FAULTWARDEN_TEST_ES8_WORKDIR")
    if reuse:
        workdir, owned = Path(reuse), False
        url = (workdir / "node.url").read_text().strip()
    else:
        workdir, owned = Path(tempfile.mkdtemp(prefix="faultwarden-test-es8.")), True
        mp = pytest.MonkeyPatch()
        mp.setenv("FAULTWARDEN_TEST_ES_SETTINGS", json.dumps(TINY_WRITE_POOL))
        try:
            url = script.start(workdir, version=ES8_VERSION, timeout=600, heap="512m")
        except Exception as exc:
            script.stop(workdir)
            shutil.rmtree(workdir, ignore_errors=True)
            unavailable(f"no Elasticsearch {ES8_VERSION} for the shipping tests: {exc}",
                        "needs Maven and a Java 17+ JDK")
        finally:
            mp.undo()
    client = Elasticsearch(url, request_timeout=120)
    node = Node(url, client, _node_version(client), workdir)
    nodes_seen.append(f"Elasticsearch {node.version} at {url} (tests/ship, tiny write pool)")
    yield node
    client.close()
    if owned:
        script.stop(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def es9(es_url, es):
    return Node(es_url, es, _node_version(es))


@pytest.fixture(params=["9.x", "8.19"])
def any_es(request) -> Node:
    """Each core shipping test runs against both supported majors."""
    return request.getfixturevalue("es9" if request.param == "9.x" else "es8")


@pytest.fixture
def prefix(request):
    """`fwtest-<uuid8>`; its indices and templates are removed after the test, on every node
    the test used."""
    name = f"fwtest-{uuid.uuid4().hex[:8]}"
    nodes = [request.getfixturevalue(n) for n in ("any_es", "es8") if n in request.fixturenames]
    if request.node.get_closest_marker("es") and "any_es" not in request.fixturenames:
        nodes.append(Node("", request.getfixturevalue("es"), ""))
    yield name
    for node in nodes:
        node.delete_prefix(name)


@pytest.fixture
def settings(prefix):
    def make(url: str, **overrides) -> Settings:
        values = {"hosts": [url], "index_prefix": prefix, "flush_interval_s": 0.1,
                  "request_timeout_s": 30.0, **overrides}
        return Settings(**values)
    return make


@pytest.fixture
def proxy(request):
    """In front of the test's node (`any_es` when the test runs on both, else the 9.x one)."""
    upstream = (request.getfixturevalue("any_es").url if "any_es" in request.fixturenames
                else request.getfixturevalue("es_url"))
    p = EsProxy(upstream)
    yield p
    p.close()
