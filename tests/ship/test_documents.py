"""Event → document: ids, index names, times, non-finite numbers. No Elasticsearch needed."""
from __future__ import annotations

import math

import orjson

from faultwarden.daemon.ship.documents import document_id, iso_utc, to_document
from faultwarden.daemon.ship.sink import LocalSink

EVENT = {"@timestamp": 1_767_225_600.1234, "message": "step 1", "log.file.path": "/l/train.log",
         "log.offset": 4096, "host.name": "gpu-1", "ml.loss": 0.25}


def test_timestamps_are_iso_utc_with_millis():
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1_767_225_600.1234) == "2026-01-01T00:00:00.123Z"
    assert iso_utc(1_767_225_599.9996) == "2026-01-01T00:00:00.000Z"  # rounds across the second
    assert iso_utc("2026-01-01T01:00:00+01:00") == "2026-01-01T00:00:00.000Z"


def test_document_is_typed_and_indexed_by_the_events_own_day():
    doc = to_document(EVENT, "fw", "file-a", 4200)
    body = orjson.loads(doc.body)
    assert doc.index == "fw-events-2026.01.01"
    assert body["@timestamp"] == "2026-01-01T00:00:00.123Z"
    assert body["ml.loss"] == 0.25 and "ml.non_finite" not in body
    assert (doc.file_id, doc.end) == ("file-a", 4200)


def test_non_finite_numbers_become_null_and_are_named():
    event = {**EVENT, "ml.loss": math.nan, "ml.grad_norm": math.inf, "ml.loss_scale": -math.inf}
    body = orjson.loads(to_document(event, "fw", "file-a").body)
    assert body["ml.loss"] is None and body["ml.grad_norm"] is None and body["ml.loss_scale"] is None
    assert body["ml.non_finite"] == ["ml.grad_norm", "ml.loss", "ml.loss_scale"]
    assert math.isnan(event["ml.loss"])  # the caller's event (the detectors' view) is untouched


def test_ids_depend_only_on_where_the_record_was_read():
    a = to_document(EVENT, "fw", "file-a")
    again = to_document({**EVENT, "event.ingested": 1_900_000_000.0}, "fw", "file-a")
    assert a.id == again.id == document_id("gpu-1", "file-a", 4096)
    assert to_document({**EVENT, "log.offset": 4097}, "fw", "file-a").id != a.id
    assert to_document(EVENT, "fw", "file-b").id != a.id
    assert to_document({**EVENT, "host.name": "gpu-2"}, "fw", "file-a").id != a.id
    assert len(a.id) == 20


def test_an_unusable_timestamp_is_kept_as_a_label_and_the_read_time_used():
    doc = to_document({**EVENT, "@timestamp": "yesterday", "event.ingested": 1_767_225_600.5}, "fw", "f")
    body = orjson.loads(doc.body)
    assert body["@timestamp"] == "2026-01-01T00:00:00.500Z"
    assert body["labels.original_timestamp"] == "yesterday"
    assert doc.index == "fw-events-2026.01.01"


def test_local_sink_acknowledges_at_once():
    acked = []
    sink = LocalSink(on_shipped=lambda f, end: acked.append((f, end)))
    assert sink.submit(EVENT, "file-a", 4200)
    assert sink.submit(EVENT)  # no position: counted, nothing to acknowledge
    assert acked == [("file-a", 4200)]
    assert (sink.stats.submitted, sink.stats.shipped) == (2, 2)
    assert sink.close()
