"""Incidents in Elasticsearch: one document per incident id, however often it is updated."""
from __future__ import annotations

import pytest

from faultwarden.daemon.incidents import IncidentBook
from faultwarden.daemon.ship import IncidentIndex, IncidentNotFound, setup
from faultwarden.detectors.finding import Finding, Where

pytestmark = pytest.mark.es


def finding(t: float, run: str = "r1", rule: str = "cuda-oom", fault: str = "cuda_oom") -> Finding:
    return Finding(rule=rule, fault=fault, severity="critical", group={"labels.run_id": run},
                   time=t, source=Where("/logs/train.log", 12, 3456),
                   message="CUDA out of memory", advice="lower the batch size",
                   evidence=("torch.OutOfMemoryError: CUDA out of memory",), explanation={"matched": "message"})


@pytest.fixture
def book_and_index(any_es, prefix):
    setup(any_es.client, prefix)
    return IncidentBook(), IncidentIndex(any_es.client, prefix, refresh=True)


def test_updates_keep_one_document_per_incident(any_es, prefix, book_and_index):
    es = any_es.client
    book, index = book_and_index
    inc = book.record(finding(1_767_225_600.25)).incident
    index.upsert(inc)
    for t in (1_767_225_660.0, 1_767_225_720.0):
        index.upsert(book.record(finding(t)).incident)
    other = book.record(finding(1_767_225_700.0, run="r2")).incident
    index.upsert(other)
    assert es.count(index=f"{prefix}-incidents")["count"] == 2
    doc = index.get(inc.id)
    assert (doc["count"], doc["last_seen"], doc["@timestamp"]) == (3, 1_767_225_720.0, "2026-01-01T00:00:00.250Z")
    assert doc["group"] == {"labels.run_id": "r1"} and doc["acknowledged"] is False
    # The group is searchable field by field.
    hits = es.search(index=f"{prefix}-incidents", query={"term": {"group.labels.run_id": "r2"}})["hits"]["hits"]
    assert [h["_id"] for h in hits] == [other.id]
    assert {d["id"] for d in index.list()} == {inc.id, other.id}


def test_an_ack_in_elasticsearch_survives_later_updates(book_and_index):
    book, index = book_and_index
    inc = book.record(finding(1_767_225_600.0)).incident
    index.upsert(inc)
    assert index.ack(inc.id[:8])["acknowledged"] is True  # a prefix of the id will do
    index.upsert(book.record(finding(1_767_225_900.0)).incident)  # the daemon's next update
    doc = index.get(inc.id)
    assert doc["acknowledged"] is True and doc["count"] == 2 and "acknowledged_at" in doc


def test_resolved_incidents_are_listed_only_when_asked(book_and_index):
    book, index = book_and_index
    inc = book.record(finding(1_767_225_600.0)).incident
    book.resolve(inc)
    index.upsert(inc)
    assert index.list() == []
    assert [d["status"] for d in index.list(include_closed=True)] == ["resolved"]
    with pytest.raises(IncidentNotFound):
        index.get("doesnotexist")


def test_in_the_daemon_upserts_never_wait_and_the_latest_state_arrives(any_es, prefix, settings, proxy):
    es = any_es.client
    setup(es, prefix)
    book = IncidentBook()
    index = IncidentIndex.from_config(settings(proxy.url), backoff_max_s=0.2)  # the cluster is away
    try:
        inc = book.record(finding(1_767_225_600.0)).incident
        index.upsert(inc)  # returns at once, raises nothing
        index.upsert(book.record(finding(1_767_225_660.0)).incident)
        assert index.pending == 1
        proxy.start()
        assert index.flush(timeout=60)
    finally:
        index.close()
    doc = es.get(index=f"{prefix}-incidents", id=inc.id)["_source"]
    assert doc["count"] == 2 and doc["last_seen"] == 1_767_225_660.0
