"""Real 429s from a real node: the 8.19 node of these tests has a one-thread write pool and a
one-slot queue (conftest), so a flood of concurrent bulk requests gets some of them rejected
(es_rejected_execution_exception), per document. Every event still arrives exactly once."""
from __future__ import annotations

import pytest

from faultwarden.daemon.ship import ElasticsearchSink

from .helpers import ship, training_events

pytestmark = pytest.mark.es


def _write_rejections(es) -> int:
    nodes = es.nodes.stats(metric="thread_pool")["nodes"].values()
    return sum(n["thread_pool"]["write"]["rejected"] for n in nodes)


def test_a_node_that_rejects_writes_still_gets_everything_once(es8, settings, prefix, tmp_path):
    es = es8.client
    rejected_before = _write_rejections(es)
    events = training_events(3000)
    sink = ElasticsearchSink(settings(es8.url, batch_events=20), state_dir=tmp_path, concurrency=12,
                             backoff_initial_s=0.05, backoff_max_s=1.0)
    ship(sink, events)
    assert sink.close(timeout=600)
    assert _write_rejections(es) > rejected_before, "the node never pushed back: the test did not test 429s"
    assert sink.stats.retried > 0
    assert (sink.stats.shipped, sink.stats.already_there, sink.stats.dead_lettered) == (3000, 0, 0)
    es.indices.refresh(index=f"{prefix}-events-*")
    assert es.count(index=f"{prefix}-events-*")["count"] == 3000
