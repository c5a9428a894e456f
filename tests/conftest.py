"""Shared fixtures. The Elasticsearch ones give a REAL node: never a skip.

Where the node comes from, in order: FAULTWARDEN_TEST_ES_URL (a node you run), the node that
scripts/test.sh started in the background (FAULTWARDEN_TEST_ES_STARTING = its workdir), else one
this session starts itself. If none can be had, every ES test errors: CI must fail, not skip.
"""
from __future__ import annotations

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


def _await_early_node(workdir: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (workdir / "node.url").exists():
            return (workdir / "node.url").read_text().strip()
        if (workdir / "node.failed").exists():
            raise RuntimeError((workdir / "node.failed").read_text())
        time.sleep(0.5)
    raise RuntimeError(f"the node started by scripts/test.sh ({workdir}) did not come up in {timeout:.0f} s")


@pytest.fixture(scope="session")
def es_url():
    if os.environ.get("FAULTWARDEN_TEST_ES_URL"):
        yield os.environ["FAULTWARDEN_TEST_ES_URL"].rstrip("/")
        return
    try:
        if os.environ.get("FAULTWARDEN_TEST_ES_STARTING"):
            yield _await_early_node(Path(os.environ["FAULTWARDEN_TEST_ES_STARTING"]), timeout=900)
            return
        script = _es_script()
        workdir = Path(tempfile.mkdtemp(prefix="faultwarden-test-es."))
        url = script.start(workdir, timeout=600)
    except Exception as exc:
        pytest.fail(f"no Elasticsearch for the tests: {exc}", pytrace=False)
    try:
        yield url
    finally:
        script.stop(workdir)


@pytest.fixture(scope="session")
def es(es_url):
    from elasticsearch import Elasticsearch

    client = Elasticsearch(es_url, request_timeout=120)
    yield client
    client.close()


def pytest_unconfigure(config):
    # Tear-down of a big heap at exit can take long on a busy machine; the process is ending anyway.
    gc.freeze()
