"""Documents Elasticsearch refused for good (a mapping conflict, a 400) are written here with
the reason, so the stream goes on and nothing vanishes silently: `<state_dir>/dead-letter.ndjson`.
One JSON object a line: `{"@timestamp", "index", "id", "status", "reason", "file_id",
"document"}`. Replay after fixing the cause with `faultwarden ship` of the original file, or
by hand from `document`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson

from faultwarden.daemon.ship.documents import Document, iso_utc

FILE_NAME = "dead-letter.ndjson"


class DeadLetter:
    def __init__(self, state_dir: str | Path | None):
        self.path = Path(state_dir) / FILE_NAME if state_dir else None

    def write(self, refused: list[tuple[Document, int, Any]]) -> None:
        """Append the refused documents and make them durable before the caller acknowledges
        the events (the shipping cursor then moves past them)."""
        if not refused or self.path is None:
            return
        now = iso_utc(time.time())
        lines = []
        for doc, status, reason in refused:
            try:
                body = orjson.loads(doc.body)
            except orjson.JSONDecodeError:
                body = doc.body.decode("utf-8", "replace")
            lines.append(orjson.dumps({"@timestamp": now, "index": doc.index, "id": doc.id,
                                       "status": status, "reason": reason, "file_id": doc.file_id,
                                       "document": body}, default=str))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as fh:
            fh.write(b"\n".join(lines) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
