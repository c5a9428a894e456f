"""`Parser`: lines of one source → events, joining the lines of a multi-line record."""
from __future__ import annotations

import json
import re
import socket
from typing import Any

import orjson

from faultwarden.daemon.parse import fields as fieldmap
from faultwarden.daemon.parse import progress
from faultwarden.daemon.parse import text, traceback
from faultwarden.daemon.parse.redact import Redactor

Event = dict[str, Any]

MAX_RECORD_LINES = 500
MAX_RECORD_CHARS = 64 * 1024
MAX_OPEN_RECORDS = 64  # one per `[rankN]:` prefix; more than this many ranks interleaving is odd

# torchrun's per-worker prefixes: `[rank3]: ...` (PyTorch ≥ 2.2), `[default3]:...` (--tee)
_RANK = re.compile(r"\[(?:rank|default)(\d+)\]:[ ]?")


class _Record:
    """A multi-line record being read: its lines and where its first line was."""

    __slots__ = ("lines", "chars", "path", "offset", "line_no", "now", "rank", "tags", "rest")

    def __init__(self, first: str, path, offset, line_no, now, rank, tags, rest):
        self.lines = [first]
        self.chars = len(first)
        self.path, self.offset, self.line_no, self.now = path, offset, line_no, now
        self.rank, self.tags, self.rest = rank, tags, rest

    def fits(self, line: str) -> bool:
        return len(self.lines) < MAX_RECORD_LINES and self.chars + len(line) + 1 <= MAX_RECORD_CHARS

    def add(self, line: str, tags: list[str] | None) -> None:
        self.lines.append(line)
        self.chars += len(line) + 1
        if tags:
            self.tags = sorted(set(self.tags or ()) | set(tags))


_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def _json_slowly(line: str):
    """orjson refuses NaN/Infinity (Python's json.dumps writes them) and says less about where
    a line is broken; the standard library takes both."""
    try:
        return json.loads(line, parse_int=fieldmap.whole_number)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"not valid JSON: {e}") from None


def _parse_error(line: str, why: str) -> Event:
    return {"message": line, "error.message": why, "tags": ["parse_error"]}


def _last_segment(line: str) -> str:
    """A progress bar rewrites itself with `\\r`: what a terminal would show is the last
    non-blank segment."""
    for segment in reversed(line.split("\r")):
        if segment.strip():
            return segment
    return ""


class Parser:
    """Parses the lines of one source, in order.

    `feed` returns the events completed by that line (none while a traceback or a
    `multiline_start` record is still being read; the one before it once the next record starts).
    `flush` returns what is still held, at end of input or when the source went quiet.
    """

    def __init__(self, source=None, host: str | None = None) -> None:
        self.format = source.format if source is not None else "auto"
        self._start = None
        self._user = None  # the source's own line format (a regex with named groups)
        self._aliases = {k.lower(): v for k, v in source.aliases.items()} if source is not None else {}
        if source is not None and source.pattern:
            self._user = progress.UserFormat(source.pattern)
        if source is not None and source.multiline_start:
            try:
                self._start = re.compile(source.multiline_start)
            except re.error as e:
                raise ValueError(f"source multiline_start: not a valid regex "
                                 f"({e}): {source.multiline_start!r}") from None
        # The operator's configuration says what this source is: it wins over the record.
        fixed: dict[str, Any] = {}
        if source is not None:
            if source.service:
                fixed["service.name"] = source.service
            if source.run_id:
                fixed["labels.run_id"] = source.run_id
            if source.dataset:
                fixed["labels.dataset"] = source.dataset
            for key, value in source.labels.items():
                fixed[f"labels.{key}"] = value
        if host:
            fixed["host.name"] = host
        self._fixed = fixed
        self._default_host = None if host else socket.gethostname()
        self._open: dict[str, _Record] = {}
        self._redact = Redactor.for_source(getattr(source, "redact", None))

    # --- lines in --------------------------------------------------------------------------

    def feed(self, line: str | bytes, *, path: str, offset: int, line_no: int,
             now: float) -> list[Event]:
        """One line (with or without its line end), bytes or text. Bytes that are not UTF-8
        are decoded with replacement characters and the event tagged `invalid_utf8`; so is text
        that holds a replacement character (a reader decoded it so)."""
        tags = None
        if type(line) is not str:
            try:
                line = line.decode()
            except UnicodeDecodeError:
                line = bytes(line).decode("utf-8", "replace")
                tags = ["invalid_utf8"]
        elif "\ufffd" in line:  # a reader that decoded with errors="replace" already
            tags = ["invalid_utf8"]
        if line[-1:] == "\n":
            line = line[:-1]
        if line[-1:] == "\r":
            line = line[:-1]
        if "\r" in line:
            line = _last_segment(line)
        first = line[:1]
        if first == "\ufeff":  # a byte-order mark at the start of a file
            line = line[1:]
            first = line[:1]
        rank = None
        prefix = ""
        if first == "[" and (line[1:5] == "rank" or line[1:8] == "default"):
            m = _RANK.match(line)
            if m:
                prefix, rank, line = m.group(0).rstrip(), int(m.group(1)), line[m.end():]
                first = line[:1]
        if self._start is not None or self._open:
            return self._feed_held(line, prefix, (path, offset, line_no, now, rank), tags)
        # No record held: the common case, one line → one event, decided by its first character.
        if first == "{" and self.format != "text":
            event = self._structured(line)
        elif not line or line.isspace():
            return []
        elif (first == "T" or first == " ") and self.format != "json" and traceback.starts(line):
            return self._hold(prefix, line, (path, offset, line_no, now, rank), tags,
                              traceback.Continuation(line))
        else:
            event = self._line(line, now)
        return [self._finish(event, path, offset, line_no, now, rank, tags)]

    def _feed_held(self, line: str, prefix: str, where: tuple, tags) -> list[Event]:
        """A line while a record may be held, or with `multiline_start` (a line matching it
        starts a record, any other line joins the record before it)."""
        out: list[Event] = []
        if self._start is not None:
            prefix, rest = "", None
            starts = self._start.search(line) is not None
            record = self._open.get("")
            if record is not None:
                if not starts and record.fits(line):
                    record.add(line, tags)
                    return out
                out.append(self._release("", split=not starts))
        else:
            record = self._open.get(prefix)
            if record is not None:
                if record.rest.accepts(line):
                    if record.fits(line):
                        record.add(line, tags)
                        return out
                    out.append(self._release(prefix, split=True))
                else:
                    out.append(self._release(prefix))
            rest = traceback.Continuation(line) if (
                self.format != "json" and traceback.starts(line)) else None
        if not line or line.isspace():
            return out
        if rest is not None or self._start is not None:
            out += self._hold(prefix, line, where, tags, rest)
        else:
            out.append(self._finish(self._line(line, where[3]), *where, tags))
        return out

    def _hold(self, prefix, line, where, tags, rest) -> list[Event]:
        """Start holding a record; returns the oldest one held if too many are."""
        released = []
        if len(self._open) >= MAX_OPEN_RECORDS:
            released.append(self._release(next(iter(self._open))))
        self._open[prefix] = _Record(line, *where, tags, rest)
        return released

    def flush(self) -> list[Event]:
        """The records still held (a traceback at the end of the input, ...)."""
        return [self._release(prefix) for prefix in list(self._open)]

    # --- events out --------------------------------------------------------------------------

    def _finish(self, event: Event, path, offset, line_no, now, rank, tags) -> Event:
        if "@timestamp" not in event:
            event["@timestamp"] = now
        event["event.ingested"] = now
        event["log.file.path"] = path
        event["log.file.line"] = line_no
        event["log.offset"] = offset
        if rank is not None:
            event["ml.rank"] = rank
        if self._default_host is not None and "host.name" not in event:
            event["host.name"] = self._default_host
        if self._fixed:
            event.update(self._fixed)
        if tags:
            event["tags"] = [*event.get("tags", ()), *tags]
        if self._redact is not None:
            self._redact(event)
        return event

    def _line(self, line: str, now: float) -> Event:
        """One line on its own → the event's own fields (no location yet)."""
        if self.format == "json" or (line[:1] == "{" and self.format != "text"):
            return self._structured(line)
        if self._user is not None:
            record = self._user.record(line)
            if record is not None:
                event = {}
                fieldmap.map_record(record, event)
                return event
        event: Event = {}
        if "%|" in line and text.progress(line, event):
            event["message"] = line.strip()
            event["tags"] = ["progress"]
            return event
        if "=" in line:
            record = progress.logfmt(line)
            if record is not None:
                fieldmap.map_record(record, event)
                event.setdefault("message", line)
                return event
        event["message"] = text.header(line, event, now)
        if ":" in line or "|" in line or "," in line:
            # Trainers that print `key: value` pairs (Megatron, nanoGPT, detectron2, fairseq)
            for name, value in progress.progress_fields(event["message"], self._aliases).items():
                event.setdefault(name, value)
        return event

    def _structured(self, line: str) -> Event:
        """A JSON object, or (first `{'`) a Python dict literal as HF Trainer prints it. A line
        that is neither is kept: raw line as `message`, tagged `parse_error`, `error.message`
        why."""
        literal = line[1:2] == "'" and self.format != "json"
        try:
            if literal:
                record = fieldmap.literal(line)
            else:
                try:
                    record = _loads(line)
                except _JSONDecodeError:
                    record = _json_slowly(line)
        except ValueError as e:
            return _parse_error(line, str(e))
        if type(record) is not dict:
            return _parse_error(line, f"expected {'a dict' if literal else 'a JSON object'}, "
                                      f"got {type(record).__name__}")
        event: Event = {}
        try:
            fieldmap.map_record(record, event)
        except RecursionError:
            return _parse_error(line, "nested too deeply to flatten")
        if literal or "message" not in event:
            event["message"] = line  # what HF printed is the message (rules match on it)
        return event

    def _release(self, prefix: str, split: bool = False) -> Event:
        record = self._open.pop(prefix)
        lines = record.lines
        while len(lines) > 1 and not lines[-1].strip():
            lines.pop()
        where = (record.path, record.offset, record.line_no, record.now, record.rank)
        tags = [*(record.tags or ()), "multiline_split"] if split else record.tags
        if len(lines) == 1 and not traceback.starts(lines[0]):
            return self._finish(self._line(lines[0], record.now), *where, tags)
        event: Event = {}
        if record.rest is None:  # a multiline_start record: the first line has the header
            head = text.header(lines[0], event, record.now) if self.format != "json" else lines[0]
            event["message"] = "\n".join([head, *lines[1:]])
        else:
            event["message"] = "\n".join(lines)
        start = next((i for i, line in enumerate(lines) if traceback.starts(line)), None)
        if start is not None:
            error_type, error_message = traceback.exception(lines)
            event["error.stack_trace"] = "\n".join(lines[start:])
            if error_type:
                event["error.type"] = error_type
            if error_message is not None:
                event["error.message"] = error_message
            event.setdefault("log.level", "error")
        return self._finish(event, *where, tags)
