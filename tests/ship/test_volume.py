"""100 000 events through the sink into a real node: exactly that many documents, typed as the
template says, and a range query on a number finds exactly the events it should."""
from __future__ import annotations

import math

import pytest

from faultwarden.daemon.ship import ElasticsearchSink

pytestmark = pytest.mark.es
N = 100_000
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z; one event a second spans two daily indices


def generated(n: int):
    """Training steps with every kind of field the template types: numbers, NaN losses, error
    events with a type and a stack trace, labels. A generator: 100k dicts at once would be the
    test's own memory problem."""
    for i in range(n):
        event = {
            "@timestamp": START + i, "event.ingested": START + i + 0.5, "message": f"step {i}",
            "log.level": "info", "log.logger": "trainer", "log.file.path": "/logs/train.log",
            "log.file.line": i + 1, "log.offset": 100 * i, "host.name": "gpu-node-1",
            "service.name": "trainer", "process.pid": 4242, "labels.run_id": f"r{i % 3}",
            "ml.step": i, "ml.loss": float("nan") if i % 1000 == 999 else 4.0 / (1 + i / 1000),
            "ml.learning_rate": 2e-5, "ml.grad_norm": 1.0 + (i % 17) / 10,
        }
        if i % 5000 == 4999:
            event.update({"log.level": "error", "error.type": "RuntimeError",
                          "error.message": "CUDA error: an illegal memory access was encountered",
                          "error.stack_trace": 'Traceback (most recent call last):\n  File "train.py"'})
        yield event


TYPES = {"@timestamp": "date", "event.ingested": "date", "message": "text", "log.level": "keyword",
         "log.file.path": "keyword", "log.file.line": "long", "log.offset": "long", "host.name": "keyword",
         "service.name": "keyword", "process.pid": "long", "labels.run_id": "keyword", "ml.step": "long",
         "ml.loss": "double", "ml.learning_rate": "double", "ml.grad_norm": "double", "ml.non_finite": "keyword",
         "error.type": "keyword", "error.message": "text", "error.stack_trace": "text"}


def test_100k_events_are_stored_exactly_once_and_typed(any_es, settings, prefix, tmp_path):
    sink = ElasticsearchSink(settings(any_es.url, flush_interval_s=1.0), state_dir=tmp_path)
    for event in generated(N):
        assert sink.submit(event, "gen-1", event["log.offset"] + 100)
    assert sink.close(timeout=900), f"not delivered: {sink.outstanding}"
    assert (sink.stats.shipped, sink.stats.already_there, sink.stats.dead_lettered) == (N, 0, 0)

    es, index = any_es.client, f"{prefix}-events-*"
    es.indices.refresh(index=index)
    assert es.count(index=index)["count"] == N
    # The mapping of every daily index, field by field, is the template's.
    mappings = es.indices.get_field_mapping(index=index, fields=list(TYPES))
    assert sorted(mappings) == [f"{prefix}-events-2026.01.01", f"{prefix}-events-2026.01.02"]
    for name, found in mappings.items():
        types = {field: next(iter(m["mapping"].values()))["type"] for field, m in found["mappings"].items()}
        assert types == TYPES, name
    # Range queries run on the typed numbers (a keyword or text `ml.step` would not count right).
    assert es.count(index=index, query={"range": {"ml.step": {"gte": 25_000, "lt": 75_000}}})["count"] == 50_000
    losses = [e["ml.loss"] for e in generated(N)]
    want = sum(1 for v in losses if math.isfinite(v) and 1.0 <= v < 2.0)
    assert 0 < want < N
    assert es.count(index=index, query={"range": {"ml.loss": {"gte": 1.0, "lt": 2.0}}})["count"] == want
    nan = sum(1 for v in losses if math.isnan(v))
    assert es.count(index=index, query={"term": {"ml.non_finite": "ml.loss"}})["count"] == nan == N // 1000
    assert es.count(index=index, query={"term": {"error.type": "RuntimeError"}})["count"] == N // 5000
