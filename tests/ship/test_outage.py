"""Elasticsearch away for 30 s while the daemon ships: detection and notification go on during
the outage, and afterwards shipping catches up with nothing lost and nothing doubled.

The node is this package's own 8.19 node, frozen with SIGSTOP: its port stays open and nothing
answers, the nastiest kind of outage for a client (every request waits for its timeout, and the
requests it gave up on are executed when the node wakes up, so the retries meet 409s).
"""
from __future__ import annotations

import time

import pytest

from faultwarden.daemon.ship import document_id

from .helpers import Service, count, json_lines, line_offsets, registry_row, service_config, stored, wait_for

pytestmark = pytest.mark.es
OUTAGE_S = 30.0
BEFORE, DURING = 2000, 3000
NAN_STEP = BEFORE + 1500  # the fault, written while the node is down


def test_a_30s_outage_loses_nothing_and_detection_goes_on(es8, prefix, tmp_path, webhook):
    es = es8.client
    config, logs = service_config(
        tmp_path, es8.url, prefix, elasticsearch={"request_timeout_s": 5.0},
        notify={"webhooks": [{"url": webhook.url, "min_severity": "info"}]})
    log = logs / "train.log"
    log.write_text(json_lines(0, BEFORE))
    daemon = Service(config, tmp_path / "daemon.out")
    try:
        wait_for(lambda: count(es, prefix) >= BEFORE or not daemon.alive(), timeout=120,
                 what="the first lines shipped", interval=0.2)
        assert daemon.alive(), daemon.output()[-3000:]
        with es8.paused():
            down_since = time.monotonic()
            with open(log, "a") as fh:
                fh.write(json_lines(BEFORE, DURING, nan_at=[NAN_STEP]))
            # Still inside the `paused` block: the node cannot have answered anything meanwhile.
            body = webhook.wait_for(lambda b: b.get("fault") == "nan_inf", timeout=60)
            assert body["source"]["line"] == NAN_STEP + 1
            assert daemon.alive()
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
        total = BEFORE + DURING
        wait_for(lambda: count(es, prefix) >= total or not daemon.alive(), timeout=180,
                 what=f"all {total} lines shipped after the outage", interval=0.5)
        # The incident reached its index too (its writer waited for the node like the events).
        wait_for(lambda: _incident_faults(es, prefix) == ["nan_inf"], timeout=60, what="the incident document")
    finally:
        assert daemon.stop() == 0, daemon.output()[-3000:]

    out = daemon.output()
    assert "shipping to Elasticsearch is held up" in out and "did not answer in time" in out
    assert "shipping to Elasticsearch again" in out
    docs = stored(es, prefix)
    assert len(docs) == total
    (host,) = {h for _, _, h in docs.values()}
    file_id, _ = registry_row(tmp_path / "state", log)
    assert set(docs) == {document_id(host, file_id, offset) for offset in line_offsets(log)}
    nan_doc = es.search(index=f"{prefix}-events-*", query={"term": {"ml.non_finite": "ml.loss"}})["hits"]["hits"]
    assert [h["_source"]["ml.step"] for h in nan_doc] == [NAN_STEP]


def _incident_faults(es, prefix: str) -> list[str]:
    es.indices.refresh(index=f"{prefix}-incidents", ignore_unavailable=True)
    hits = es.options(ignore_status=404).search(index=f"{prefix}-incidents", size=10)
    return [h["_source"]["fault"] for h in hits.get("hits", {}).get("hits", [])]


def test_detection_goes_on_when_more_events_wait_than_the_sink_holds(tmp_path, webhook, proxy):
    """The cluster is away (the proxy refuses connections) and more events wait than the sink
    takes in (`max_in_flight_events`): the fault after them must still be notified."""
    config, logs = service_config(
        tmp_path, proxy.url, "fwtest-stall", elasticsearch={"max_in_flight_events": 100},
        notify={"webhooks": [{"url": webhook.url, "min_severity": "info"}]})
    (logs / "train.log").write_text(json_lines(0, 1000, nan_at=[999]))
    daemon = Service(config, tmp_path / "daemon.out")
    try:
        body = webhook.wait_for(lambda b: b.get("fault") == "nan_inf", timeout=20)
        assert body["source"]["line"] == 1000
    finally:
        daemon.kill()
