"""One event → one Elasticsearch document: its index, its id, its JSON bytes.

The id is what makes shipping idempotent: it depends only on where the record was read (host,
source file identity, byte offset), so a replay after a crash sends the same ids and the
`create` op answers 409 instead of storing a second copy. Its shape is chosen for the node: a
hash of where (the same for a whole file) then the offset, big-endian, so one file's ids grow
in order. Elasticsearch stores a URL-safe base64 id as its raw bytes, and Lucene answers "not
here" for an id beyond a segment's largest at once, so the look-up every `create` makes costs
little (random ids cost a terms-dictionary search in every segment). The index is a daily index picked from
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

    @property
    def action(self) -> bytes:
        """The `_bulk` action line (with its newline) that goes before the body."""
        # Both are JSON-safe: index names are checked at config load, ids are URL-safe base64.
        return f'{{"create":{{"_index":"{self.index}","_id":"{self.id}"}}}}\n'.encode()


def iso_utc(value: Any) -> str:
    """Epoch seconds (or a datetime, or an ISO-8601 string) → `2024-05-01T12:00:00.123Z`.

    Raises ValueError for a string that is not ISO-8601."""
    if type(value) is float:  # the parser's epoch seconds: the common case, first
        millis = math.floor(value * 1000.0 + 0.5)
    else:
        if isinstance(value, str):
            if len(value) == 24 and value[-1] == "Z" and value[10] == "T":
                return value  # already the shape we write
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime):
            value = value.timestamp() if value.tzinfo else value.replace(tzinfo=timezone.utc).timestamp()
        millis = math.floor(float(value) * 1000.0 + 0.5)
    seconds, ms = divmod(millis, 1000)
    head = _SECONDS.get(seconds)
    if head is None:
        # Log records come many to a second: the calendar part is worked out once per second.
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        t = time.gmtime(seconds)
        head = _SECONDS[seconds] = "%04d-%02d-%02dT%02d:%02d:%02d." % (
            t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
    return head + _MILLIS[ms]


_SECONDS: dict[int, str] = {}
_MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))


def _is_iso(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 24 and value[-1] == "Z" and value[10] == "T"


def events_index(prefix: str, timestamp: str) -> str:
    """`<prefix>-events-YYYY.MM.DD` from an ISO timestamp (the event's own day, UTC)."""
    return f"{prefix}-events-{timestamp[0:4]}.{timestamp[5:7]}.{timestamp[8:10]}"


def document_id(host: str, file_id: str, offset: int) -> str:
    """A short deterministic id (20 characters, URL-safe base64 of 15 bytes): 72 bits of
    BLAKE2b over the host and file, then the byte offset in 48 bits, big-endian."""
    key = (host, file_id)
    where = _WHERE.get(key)
    if where is None:
        if len(_WHERE) >= 4096:
            _WHERE.clear()
        raw = f"{host}\x1f{file_id}".encode("utf-8", "surrogatepass")
        where = _WHERE[key] = hashlib.blake2b(raw, digest_size=9).digest()
    if not 0 <= offset < 1 << 48:  # past 256 TiB, or nonsense: still stable, just not in order
        where, offset = hashlib.blake2b(where + str(offset).encode(), digest_size=9).digest(), 0
    return base64.urlsafe_b64encode(where + offset.to_bytes(6, "big")).decode()


_WHERE: dict[tuple[str, str], bytes] = {}


def to_document(event: Mapping[str, Any], prefix: str, file_id: str | None = None,
                end: int | None = None, host: str = "", now: float | None = None) -> Document:
    """Build the shipped document. Non-finite floats become null and are listed in
    `ml.non_finite` (Elasticsearch stores no NaN); times become ISO-8601 UTC with millis."""
    doc = dict(event)
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
    body = orjson.dumps(doc, option=_DUMPS_OPTIONS, default=str)
    # orjson writes NaN and ±Infinity as null. Most documents hold no null at all, so only
    # those that do are searched for the numbers to name (None values are nulls too).
    if b"null" in body:
        non_finite = [k for k, v in doc.items() if isinstance(v, float) and not math.isfinite(v)]
        if non_finite:
            for key in non_finite:
                doc[key] = None
            earlier = doc.get(NON_FINITE_FIELD) or []
            earlier = earlier if isinstance(earlier, list) else [earlier]
            doc[NON_FINITE_FIELD] = sorted(set(earlier) | set(non_finite))
            body = orjson.dumps(doc, option=_DUMPS_OPTIONS, default=str)
    # orjson hands back its whole output buffer (4 KiB at least); a right-sized copy keeps
    # `max_in_flight_events` queued documents at their real size.
    body = memoryview(body).tobytes()
    return Document(events_index(prefix, doc["@timestamp"]), _id, body, file_id, end)
