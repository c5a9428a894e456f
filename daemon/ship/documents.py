"""One event → one Elasticsearch document: its index, its id, its JSON bytes.

The id is what makes shipping idempotent: it depends only on where the record was read (host,
source file identity, byte offset), so a replay after a crash sends the same ids and the
`create` op answers 409 instead of storing a second copy. The index is a daily index picked from
the event's own time, so a replayed event goes to the same index as the first time.
"""
from __future__ import annotations

import base64
import hashlib
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

import orjson

# Fields that hold epoch seconds in events and must reach Elasticsearch as ISO-8601 UTC.
TIME_FIELDS = ("@timestamp", "event.ingested", "event.created")
NON_FINITE_FIELD = "ml.non_finite"
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


@dataclass(slots=True)
class Document:
    """A document ready for `_bulk`, plus what the sink must remember to acknowledge it."""

    index: str
    id: str
    body: bytes
    file_id: str | None = None
    end: int | None = None

    @property
    def size(self) -> int:
        # The bulk line pair: a ~70-byte action line, the body, two newlines.
        return len(self.body) + 80


def iso_utc(value: Any) -> str:
    """Epoch seconds (or a datetime, or an ISO-8601 string) → `2024-05-01T12:00:00.123Z`.

    Raises ValueError for a string that is not ISO-8601."""
    if isinstance(value, str):
        if len(value) == 24 and value[-1] == "Z" and value[10] == "T":
            return value  # already the shape we write
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.timestamp() if value.tzinfo else value.replace(tzinfo=timezone.utc).timestamp()
    millis = int(round(float(value) * 1000))
    seconds, ms = divmod(millis, 1000)
    t = time.gmtime(seconds)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (t.tm_year, t.tm_mon, t.tm_mday,
                                                   t.tm_hour, t.tm_min, t.tm_sec, ms)


def _is_iso(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 24 and value[-1] == "Z" and value[10] == "T"


def events_index(prefix: str, timestamp: str) -> str:
    """`<prefix>-events-YYYY.MM.DD` from an ISO timestamp (the event's own day, UTC)."""
    return f"{prefix}-events-{timestamp[0:4]}.{timestamp[5:7]}.{timestamp[8:10]}"


def document_id(host: str, file_id: str, offset: int) -> str:
    """A short deterministic id: 120 bits of BLAKE2b over where the record was read."""
    raw = f"{host}\x1f{file_id}\x1f{offset}".encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(hashlib.blake2b(raw, digest_size=15).digest()).decode()


def to_document(event: Mapping[str, Any], prefix: str, file_id: str | None = None,
                end: int | None = None, host: str = "", now: float | None = None) -> Document:
    """Build the shipped document. Non-finite floats become null and are listed in
    `ml.non_finite` (Elasticsearch stores no NaN); times become ISO-8601 UTC with millis."""
    doc = dict(event)
    non_finite = [k for k, v in doc.items() if isinstance(v, float) and not math.isfinite(v)]
    if non_finite:
        for key in non_finite:
            doc[key] = None
        earlier = doc.get(NON_FINITE_FIELD) or []
        doc[NON_FINITE_FIELD] = sorted(set(earlier if isinstance(earlier, list) else [earlier]) | set(non_finite))
    for key in TIME_FIELDS:
        value = doc.get(key)
        if value is not None:
            try:
                doc[key] = iso_utc(value)
            except (ValueError, TypeError, OverflowError, OSError):
                pass  # shipped as it is; Elasticsearch refuses it and it is dead-lettered with why
    if not _is_iso(doc.get("@timestamp")):
        # No usable time (the parser always sets one; this guards hand-made events): keep what
        # was there as a label and use the ingest time, so the index name is always valid.
        if doc.get("@timestamp") is not None:
            doc.setdefault("labels.original_timestamp", str(doc["@timestamp"]))
        ingested = doc.get("event.ingested")
        doc["@timestamp"] = ingested if _is_iso(ingested) else iso_utc(time.time() if now is None else now)
    host = str(doc.get("host.name") or host)
    source = file_id if file_id is not None else doc.get("log.file.path")
    offset = doc.get("log.offset")
    if source is not None and isinstance(offset, int):
        _id = document_id(host, str(source), offset)
    else:
        # No position to name it by (e.g. an event not read from a file): name it by content,
        # which is still stable across replays of the same event.
        _id = base64.urlsafe_b64encode(hashlib.blake2b(
            orjson.dumps(doc, option=_DUMPS_OPTIONS | orjson.OPT_SORT_KEYS, default=str),
            digest_size=15).digest()).decode()
    # orjson hands back its whole output buffer (4 KiB at least); a right-sized copy keeps
    # `max_in_flight_events` queued documents at their real size.
    body = memoryview(orjson.dumps(doc, option=_DUMPS_OPTIONS, default=str)).tobytes()
    return Document(events_index(prefix, doc["@timestamp"]), _id, body, file_id, end)
