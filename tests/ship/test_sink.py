"""The Elasticsearch sink against the real node: typed documents, replays that double nothing,
refusals dead-lettered, the cursor callback only after the ack, outages and 429s survived."""
from __future__ import annotations

import json
import math
import threading

import pytest

from faultwarden.daemon.ship import ElasticsearchSink
from faultwarden.daemon.ship.documents import to_document

from .helpers import ship, training_events, wait_for

pytestmark = pytest.mark.es
FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.5}


def make_sink(settings_for, url, tmp_path, on_shipped=None, **kw):
    return ElasticsearchSink(settings_for(url, **kw.pop("settings", {})), on_shipped,
                             state_dir=tmp_path, **FAST, **kw)


def search_all(es, prefix):
    es.indices.refresh(index=f"{prefix}-events-*")
    return es.search(index=f"{prefix}-events-*", size=1000, sort=[{"log.offset": "asc"}])["hits"]["hits"]


def test_events_land_typed_with_nan_as_null(any_es, settings, prefix, tmp_path):
    es, es_url = any_es.client, any_es.url
    events = training_events(10)
    sink = make_sink(settings, es_url, tmp_path)
    ship(sink, events)
    assert sink.close(timeout=60)
    hits = search_all(es, prefix)
    assert len(hits) == 10
    nan_doc = hits[3]["_source"]
    assert nan_doc["ml.loss"] is None and nan_doc["ml.non_finite"] == ["ml.loss"]
    assert hits[4]["_source"]["ml.loss"] == pytest.approx(0.4)
    assert hits[0]["_source"]["@timestamp"] == "2026-01-01T00:00:00.000Z"
    wanted = ["ml.loss", "ml.step", "ml.non_finite", "@timestamp", "labels.run_id", "message",
              "log.level", "event.ingested"]
    caps = es.field_caps(index=f"{prefix}-events-*", fields=wanted)["fields"]
    types = {name: next(iter(caps[name])) for name in wanted if name in caps}
    assert types == {"ml.loss": "double", "ml.step": "long", "ml.non_finite": "keyword",
                     "@timestamp": "date", "labels.run_id": "keyword", "message": "text",
                     "log.level": "keyword", "event.ingested": "date"}
    # A query on the numbers works on the typed field; the NaN step is not among them.
    nans = sum(1 for e in events if math.isnan(e["ml.loss"]))
    assert nans == 1
    found = es.count(index=f"{prefix}-events-*", query={"range": {"ml.loss": {"gte": 0}}})["count"]
    assert found == 10 - nans
    assert es.count(index=f"{prefix}-events-*", query={"term": {"ml.non_finite": "ml.loss"}})["count"] == nans


def test_a_replay_doubles_nothing(any_es, settings, prefix, tmp_path):
    es, es_url = any_es.client, any_es.url
    events = training_events(30)
    first = make_sink(settings, es_url, tmp_path)
    ship(first, events[:20])
    assert first.close(timeout=60)
    # After a crash the tailer replays from its shipping cursor, which lagged: overlap 10..19.
    second = make_sink(settings, es_url, tmp_path)
    ship(second, events[10:])
    assert second.close(timeout=60)
    assert (first.stats.shipped, second.stats.shipped, second.stats.already_there) == (20, 10, 10)
    hits = search_all(es, prefix)
    assert [h["_source"]["log.offset"] for h in hits] == [e["log.offset"] for e in events]


def test_refused_documents_are_dead_lettered_and_the_stream_goes_on(any_es, settings, prefix, tmp_path):
    es, es_url = any_es.client, any_es.url
    acked = []
    events = training_events(6)
    events[2] = {**events[2], "ml.loss": "not a number"}  # conflicts with the double mapping
    sink = make_sink(settings, es_url, tmp_path, on_shipped=lambda f, end: acked.append(end))
    ship(sink, events)
    assert sink.close(timeout=60)
    assert (sink.stats.shipped, sink.stats.dead_lettered) == (5, 1)
    assert acked and acked[-1] == events[-1]["log.offset"] + 100  # the cursor moves past it
    (line,) = (tmp_path / "dead-letter.ndjson").read_text().splitlines()
    letter = json.loads(line)
    assert letter["status"] == 400
    assert letter["reason"]["type"] == "document_parsing_exception"
    assert "ml.loss" in letter["reason"]["reason"]
    assert letter["document"]["log.offset"] == events[2]["log.offset"]
    assert len(search_all(es, prefix)) == 5


class AckChecker:
    """An on_shipped callback that checks, with realtime GETs, that every document up to the
    reported offset is already stored when the offset is reported."""

    def __init__(self, es, prefix, events, file_id="file-1"):
        self.es, self.index = es, to_document(events[0], prefix).index
        self.ids = {e["log.offset"] + 100: to_document(e, prefix, file_id).id for e in events}
        self.violations: list[str] = []
        self.acked: list[tuple[str, int]] = []

    def __call__(self, file_id, end):
        want = [i for e, i in self.ids.items() if e <= end]
        docs = self.es.mget(docs=[{"_index": self.index, "_id": i} for i in want])["docs"]
        self.violations.extend(d["_id"] for d in docs if not d.get("found"))
        self.acked.append((file_id, end))

    def check_complete(self, last_end):
        assert self.violations == []
        assert self.acked[-1] == ("file-1", last_end)
        ends = [end for _, end in self.acked]
        assert ends == sorted(ends)


def test_cursor_moves_only_after_the_ack_and_an_outage_loses_nothing(any_es, settings, prefix, tmp_path, proxy):
    """ES down first (the proxy's port refuses connections), then up: everything arrives, and
    every offset reported was already held by Elasticsearch when it was reported."""
    es = any_es.client
    events = training_events(25)
    checker = AckChecker(es, prefix, events)
    sink = make_sink(settings, proxy.url, tmp_path, on_shipped=checker, settings={"batch_events": 10})
    ship(sink, events)
    wait_for(lambda: sink.stats.retried > 0, what="a failed delivery attempt")
    assert checker.acked == [] and sink.outstanding == 25
    proxy.start()
    assert sink.wait_idle(timeout=60)
    assert sink.close(timeout=60)
    checker.check_complete(events[-1]["log.offset"] + 100)
    assert len(search_all(es, prefix)) == 25 and sink.stats.shipped == 25


def test_per_document_429s_are_retried_until_stored(any_es, settings, prefix, tmp_path, proxy):
    es = any_es.client
    events = training_events(40)
    # Every other document of the first batches is refused once, so those batches resolve
    # after later ones (two senders): their acknowledgement must still wait its turn.
    rejected = {to_document(e, prefix, "file-1").id for e in events[:20:2]}
    proxy.reject_once = lambda _id: _id in rejected
    proxy.fail_bulk = [503]  # and the very first bulk request fails as a whole
    proxy.start()
    checker = AckChecker(es, prefix, events)
    sink = make_sink(settings, proxy.url, tmp_path, on_shipped=checker, settings={"batch_events": 5})
    ship(sink, events)
    assert sink.close(timeout=60)
    assert (sink.stats.shipped, sink.stats.already_there, sink.stats.dead_lettered) == (40, 0, 0)
    assert sink.stats.retried >= 10
    # 429 once by the proxy, then stored (the 8.19 node's tiny write queue may add real 429s)
    assert all(proxy.seen[i] >= 2 for i in rejected)
    checker.check_complete(events[-1]["log.offset"] + 100)
    assert len(search_all(es, prefix)) == 40


def test_a_full_queue_blocks_submit_instead_of_dropping(settings, prefix, tmp_path, proxy):
    sink = make_sink(settings, proxy.url, tmp_path, settings={"max_in_flight_events": 100})
    events = training_events(101)
    ship(sink, events[:100])
    assert sink.submit(events[100], "file-1", 10_200, timeout=0.2) is False
    blocked = threading.Thread(target=sink.submit, args=(events[100], "file-1", 10_200))
    blocked.start()
    proxy.start()
    blocked.join(timeout=60)
    assert not blocked.is_alive()
    assert sink.close(timeout=60) and sink.stats.shipped == 101


def test_close_gives_up_within_its_timeout_when_elasticsearch_stays_down(settings, prefix, tmp_path, proxy):
    acked = []
    sink = make_sink(settings, proxy.url, tmp_path, on_shipped=lambda *a: acked.append(a))
    ship(sink, training_events(5))
    assert sink.close(timeout=1.0) is False
    assert not sink.running
    assert acked == [] and sink.outstanding == 5
    with pytest.raises(RuntimeError):
        sink.submit({"message": "late"})


def test_close_does_not_wait_on_credentials_that_are_refused(settings, prefix, tmp_path, proxy):
    """A 401 will not cure itself: close() stops retrying at once instead of using up its timeout
    (the daemon's shutdown must not hang on a wrong password)."""
    proxy.fail_all = 401
    proxy.start()
    sink = make_sink(settings, proxy.url, tmp_path)
    ship(sink, training_events(5))
    wait_for(lambda: sink.stats.retried > 0, what="a refused attempt")
    closing = threading.Thread(target=lambda: setattr(sink, "closed_with", sink.close(timeout=3600)))
    closing.start()
    closing.join(timeout=60)
    assert not closing.is_alive(), "close() waited on a 401"
    assert sink.closed_with is False and sink.outstanding == 5
