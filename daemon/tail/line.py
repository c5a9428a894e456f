"""What the tailer hands out: one line of one file, and what it is for."""
from __future__ import annotations

from dataclasses import dataclass, field

from faultwarden.daemon.config import Source


@dataclass(slots=True)   # not frozen: a frozen dataclass costs 4x to make, and one is made per line
class Line:
    """Read-only by convention."""

    source: Source = field(repr=False)
    path: str        # where the file was last seen under a source pattern
    file_id: str     # stable for the file's life, across renames and restarts
    offset: int      # byte offset of the line's first byte
    end: int         # byte offset after its newline (pass it to Tailer.shipped)
    line_no: int     # 1-based
    text: str        # without the newline (nor a CRLF's CR); bad UTF-8 replaced
    detect: bool     # first time out: for the detectors
    ship: bool       # for the sink (may come again, detect=False, after a restart or back-pressure)
