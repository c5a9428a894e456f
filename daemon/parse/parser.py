"""Minimal first cut: JSON lines, plain text, Python tracebacks joined."""
from __future__ import annotations

import gzip
import json
import socket
import time
from typing import Any, Iterator

import orjson

Event = dict[str, Any]
_TB = "Traceback (most recent call last):"


class Parser:
    def __init__(self, source=None, host: str | None = None):
        self.source = source
        base: Event = {"host.name": host or socket.gethostname()}
        if source is not None:
            if source.service:
                base["service.name"] = source.service
            if source.run_id:
                base["labels.run_id"] = source.run_id
            if source.dataset:
                base["labels.dataset"] = source.dataset
            for k, v in source.labels.items():
                base[f"labels.{k}"] = v
        self._base = base
        self._buf: list[str] = []
        self._where: tuple = ()

    def feed(self, line, *, path: str, offset: int, line_no: int, now: float) -> list[Event]:
        if isinstance(line, bytes):
            line = line.decode("utf-8", "replace")
        line = line.rstrip("\r\n")
        out: list[Event] = []
        if self._buf:
            if line.startswith((" ", "\t")) or not line.strip():
                self._buf.append(line)
                return out
            if not self._exception_seen():
                self._buf.append(line)
                return out
            out += self.flush()
        if line.startswith(_TB):
            self._buf = [line]
            self._where = (path, offset, line_no, now)
            return out
        if not line.strip():
            return out
        out.append(self._one(line, path, offset, line_no, now))
        return out

    def _exception_seen(self) -> bool:
        return any(not l.startswith((" ", "\t")) and l.strip() for l in self._buf[1:])

    def flush(self) -> list[Event]:
        if not self._buf:
            return []
        text = "\n".join(self._buf).rstrip()
        path, offset, line_no, now = self._where
        self._buf = []
        last = text.splitlines()[-1]
        etype, _, emsg = last.partition(": ")
        ev = self._new(text, path, offset, line_no, now)
        ev.update({"log.level": "error", "error.type": etype, "error.message": emsg,
                   "error.stack_trace": text})
        return [ev]

    def _new(self, message, path, offset, line_no, now) -> Event:
        ev = dict(self._base)
        ev.update({"message": message, "@timestamp": now, "event.ingested": now,
                   "log.file.path": path, "log.file.line": line_no, "log.offset": offset})
        return ev

    def _one(self, line, path, offset, line_no, now) -> Event:
        ev = self._new(line, path, offset, line_no, now)
        if line.startswith("{"):
            try:
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    doc = json.loads(line)
            except ValueError as e:
                ev["tags"] = ["parse_error"]
                ev["error.message"] = f"not valid JSON: {e}"
                return ev
            if isinstance(doc, dict):
                for k, v in doc.items():
                    if k in ("msg", "message"):
                        ev["message"] = v
                    elif isinstance(v, (int, float)) and not isinstance(v, bool):
                        ev[f"ml.{k}"] = v
                    else:
                        ev[f"labels.{k}"] = v
        return ev


def read_file(path, source=None) -> Iterator[Event]:
    opener = gzip.open if str(path).endswith(".gz") else open
    p = Parser(source)
    now = time.time()
    offset = 0
    with opener(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            yield from p.feed(raw, path=str(path), offset=offset, line_no=n, now=now)
            offset += len(raw)
    yield from p.flush()
