"""Real 429s from a real node: a second node with a one-thread write pool and a one-slot queue,
flooded by many concurrent bulk requests, rejects some of them (es_rejected_execution_exception).
Slow (it starts its own node), so not in the default run: `pytest -m slow tests/ship`."""
from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from faultwarden.daemon.ship import ElasticsearchSink

from .helpers import ship, training_events

pytestmark = [pytest.mark.es, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_node():
    spec = importlib.util.spec_from_file_location("fw_es_script_overload", ROOT / "scripts/es.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    workdir = Path(tempfile.mkdtemp(prefix="faultwarden-test-es-tiny."))
    mp = pytest.MonkeyPatch()
    mp.setenv("FAULTWARDEN_TEST_ES_SETTINGS", json.dumps({"thread_pool.write.size": "1",
                                                          "thread_pool.write.queue_size": "1"}))
    try:
        url = script.start(workdir, timeout=600, heap="256m")
    except Exception as exc:
        pytest.fail(f"no second Elasticsearch for the overload test: {exc}", pytrace=False)
    finally:
        mp.undo()
    yield url
    script.stop(workdir)
    shutil.rmtree(workdir, ignore_errors=True)


def test_a_node_that_rejects_writes_still_gets_everything_once(tiny_node, settings, prefix, tmp_path):
    events = training_events(3000)
    sink = ElasticsearchSink(settings(tiny_node, batch_events=20), state_dir=tmp_path, concurrency=12,
                             backoff_initial_s=0.05, backoff_max_s=1.0)
    ship(sink, events)
    assert sink.close(timeout=600)
    es = Elasticsearch(tiny_node, request_timeout=120)
    try:
        rejected = es.nodes.stats(metric="thread_pool")["nodes"]
        rejections = sum(n["thread_pool"]["write"]["rejected"] for n in rejected.values())
        assert rejections > 0, "the node never pushed back: the test did not test 429s"
        assert sink.stats.retried > 0
        assert (sink.stats.shipped, sink.stats.dead_lettered) == (3000, 0)
        es.indices.refresh(index=f"{prefix}-events-*")
        assert es.count(index=f"{prefix}-events-*")["count"] == 3000
    finally:
        es.close()
