"""Helpers for the parser tests: feed lines the way the tailer does (bytes, with offsets)."""
from __future__ import annotations

from faultwarden.daemon.config import Source
from faultwarden.daemon.parse import Parser

NOW = 1_700_000_000.0


def run(lines, source: Source | None = None, host: str | None = "testhost", now: float = NOW):
    """Every event of `lines` (str or bytes, without line ends), flush included."""
    parser = Parser(source, host=host)
    events, offset = [], 0
    for number, line in enumerate(lines, 1):
        raw = (line.encode() if isinstance(line, str) else line) + b"\n"
        events += parser.feed(raw, path="/logs/train.log", offset=offset, line_no=number, now=now)
        offset += len(raw)
    return events + parser.flush()


def one(line, **kw):
    events = run([line], **kw)
    assert len(events) == 1, events
    return events[0]


def source(**kw) -> Source:
    kw.setdefault("paths", ["/logs/*.log"])
    return Source(**kw)
