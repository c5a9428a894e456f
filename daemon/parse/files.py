"""`read_file`: a whole log file (plain or gzip) → events, for `diagnose` and `ship`."""
from __future__ import annotations

import gzip
import math
import os
import time
from itertools import islice
from typing import IO, Iterator

from faultwarden.daemon.parse.parser import Event, Parser

GZIP_MAGIC = b"\x1f\x8b"
_LOOKAHEAD_LINES = 1000


def _open(path: str) -> IO[bytes]:
    """The file's bytes, gunzipped when it is gzip (told by its magic bytes, not its name, so
    `train.log.1.gz` and a renamed archive both work)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


def _first_timestamp(path: str, source) -> float | None:
    """The first record timestamp within the first lines (NaN marks 'the record had none')."""
    parser = Parser(source, host="-")
    with _open(path) as f:
        for line_no, raw in enumerate(islice(f, _LOOKAHEAD_LINES), 1):
            for event in parser.feed(raw, path=path, offset=0, line_no=line_no, now=math.nan):
                if not math.isnan(event["@timestamp"]):
                    return event["@timestamp"]
    return None


def read_file(path, source=None, host: str | None = None) -> Iterator[Event]:
    """Every event of one file, in order. `log.offset` is the byte offset in the uncompressed
    text.

    Past logs are replayed on their own clock: a record without a timestamp of its own gets the
    timestamp of the record before it (the first ones: the first timestamp in the file, else the
    file's modification time), so a traceback at the end of a week-old log is not dated today and
    detectors see no gap that was not there. `event.ingested` is the time it was read.
    """
    path = os.fspath(path)
    clock = _first_timestamp(path, source)
    if clock is None:
        clock = os.stat(path).st_mtime
    parser = Parser(source, host)
    offset = 0
    with _open(path) as f:
        line_no = 0
        for line_no, raw in enumerate(f, 1):
            for event in parser.feed(raw, path=path, offset=offset, line_no=line_no, now=clock):
                clock = event["@timestamp"]
                event["event.ingested"] = time.time()
                yield event
            offset += len(raw)
    for event in parser.flush():
        event["event.ingested"] = time.time()
        yield event
