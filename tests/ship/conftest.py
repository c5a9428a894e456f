"""Fixtures for the shipping tests: a unique index prefix per test (cleaned up after), settings
pointing at the real node, and a proxy in front of it for outages and 429s."""
from __future__ import annotations

import uuid

import pytest

from faultwarden.daemon.config import Elasticsearch as Settings

from .proxy import EsProxy


@pytest.fixture
def prefix(request):
    """`fwtest-<uuid8>`; its indices and templates are removed after the test."""
    name = f"fwtest-{uuid.uuid4().hex[:8]}"
    es = request.getfixturevalue("es") if request.node.get_closest_marker("es") else None
    yield name
    if es is not None:
        es.options(ignore_status=404).indices.delete(index=f"{name}-*", expand_wildcards="all")
        for template in ("events", "incidents"):
            es.options(ignore_status=404).indices.delete_index_template(name=f"{name}-{template}")


@pytest.fixture
def settings(prefix):
    def make(url: str, **overrides) -> Settings:
        values = {"hosts": [url], "index_prefix": prefix, "flush_interval_s": 0.1,
                  "request_timeout_s": 30.0, **overrides}
        return Settings(**values)
    return make


@pytest.fixture
def proxy(es_url):
    p = EsProxy(es_url)
    yield p
    p.close()
