"""Shared fixtures. The Elasticsearch ones give a REAL node, never a fake.

Where the node comes from, in order: FAULTWARDEN_TEST_ES_URL (a node you run); the node that
scripts/test.sh started in the background (FAULTWARDEN_TEST_ES_STARTING = its workdir); a
testcontainers container where a Docker engine answers; else the integ-test-zip node this session
starts itself (scripts/es.py). If none can be had the ES tests skip with a reason that says how to
get one, except under FAULTWARDEN_REQUIRE_ES=1 (CI), where they fail.
"""
from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _es_script():
    spec = importlib.util.spec_from_file_location("fw_es_script", ROOT / "scripts/es.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unavailable(message: str, how: str) -> None:
    """A real component the tests need is missing: a failure under FAULTWARDEN_REQUIRE_ES=1 (CI),
    else a skip that says how to get it."""
    if os.environ.get("FAULTWARDEN_REQUIRE_ES") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(f"{message}; {how}")


@pytest.fixture(scope="session")
def es_script():
    """scripts/es.py as a module: start/stop more nodes (e.g. an 8.x one for the shipping tests)."""
    return _es_script()


@pytest.fixture(scope="session")
def unavailable():
    return _unavailable


@pytest.fixture(scope="session")
def nodes_seen() -> list[str]:
    """Lines printed at the end of the run: which nodes the tests talked to."""
    return _NODE_SEEN


def _await_early_node(workdir: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (workdir / "node.url").exists():
            return (workdir / "node.url").read_text().strip()
        if (workdir / "node.failed").exists():
            raise RuntimeError((workdir / "node.failed").read_text())
        time.sleep(0.5)
    raise RuntimeError(f"the node started by scripts/test.sh ({workdir}) did not come up in {timeout:.0f} s")


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def _node():
    """A real node's URL for the session, from the first place that has one (module docstring)."""
    if os.environ.get("FAULTWARDEN_TEST_ES_URL"):
        yield os.environ["FAULTWARDEN_TEST_ES_URL"].rstrip("/"), "FAULTWARDEN_TEST_ES_URL"
    elif os.environ.get("FAULTWARDEN_TEST_ES_STARTING"):
        yield _await_early_node(Path(os.environ["FAULTWARDEN_TEST_ES_STARTING"]), timeout=900), \
            "started early by scripts/test.sh"
    elif _docker_answers():
        from testcontainers.elasticsearch import ElasticSearchContainer

        with ElasticSearchContainer("docker.elastic.co/elasticsearch/elasticsearch:9.2.4", mem_limit="1G") as c:
            yield c.get_url(), "testcontainers"
    else:
        script = _es_script()
        workdir = Path(tempfile.mkdtemp(prefix="faultwarden-test-es."))
        try:
            yield script.start(workdir, timeout=600), "integ-test-zip started by this session"
        finally:
            script.stop(workdir)


@pytest.fixture(scope="session")
def es_url(request):
    stack = contextlib.ExitStack()
    try:
        url, origin = stack.enter_context(_node())
        version = _version(url)
    except Exception as exc:
        stack.close()
        _unavailable(f"no Elasticsearch for the tests: {exc}",
                     "set FAULTWARDEN_TEST_ES_URL, or run `make test`, which starts one "
                     "(needs Maven, a Java 21+ JDK and root to create the fw-es user)")
    _NODE_SEEN.append(f"{version} at {url} ({origin})")
    yield url
    stack.close()


def _version(url: str) -> str:
    import json
    import urllib.request

    # The test distribution has no `GET /`: the nodes API says the version.
    with urllib.request.urlopen(f"{url}/_nodes/_local", timeout=30) as resp:
        (node,) = json.load(resp)["nodes"].values()
    return f"Elasticsearch {node['version']}"


_NODE_SEEN: list[str] = []


def pytest_terminal_summary(terminalreporter):
    for line in _NODE_SEEN:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def es(es_url):
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url, request_timeout=120)
    yield client
    client.close()


def pytest_unconfigure(config):
    # Tear-down of a big heap at exit can take long on a busy machine; the process is ending anyway.
    gc.freeze()


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it (with its
    headers, in `posts`) while `status` is 200, and answers `status`."""

    def __init__(self):
        import http.server
        import json
        import threading

        receiver = self
        self.posts: list[dict] = []  # {"headers": ..., "json": body}
        self.status = 200
        arrived = self.arrived = threading.Condition()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.status
                if status == 200:
                    with arrived:
                        receiver.posts.append({"headers": dict(self.headers), "body": body,
                                               "json": json.loads(body or b"null")})
                        arrived.notify_all()
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def received(self) -> list:
        """The JSON bodies, in order."""
        return [post["json"] for post in self.posts]

    def wait_for(self, predicate, timeout: float = 60.0):
        """The first body for which predicate(body) is true, or AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for body in self.received:
                    if predicate(body):
                        return body
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching notification in {timeout:.0f} s; got {self.received!r}")
                self.arrived.wait(left)

    def wait(self, n: int = 1, timeout: float = 60.0) -> list[dict]:
        """The posts, once at least `n` arrived."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.posts) >= n, timeout):
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {n} webhook POST(s)")
        return self.posts

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()
