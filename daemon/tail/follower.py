"""One tailed file: its identity, its two cursors, and the reading that moves them.

Cursors (byte offsets, always at a line start):
- `det`  — detection: every line before it was handed out with detect=True;
- `snd`  — sent: every line before it was handed out with ship=True;
- `acked` — shipped: the sink acknowledged every line before it (`Tailer.shipped`).
`snd` runs ahead of `acked` by at most the back-pressure bound; past it lines go out for
detection only, and `snd` waits. When acknowledgements make room, the lines from `snd` are read
again (detect=False, ship=True) — the file itself is the buffer, so memory stays bounded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from faultwarden.daemon.config import Source
from faultwarden.daemon.tail import chunks
from faultwarden.daemon.tail.line import Line
from faultwarden.daemon.tail.registry import Record


@dataclass(eq=False)
class Follower:
    file_id: str
    dev: int
    ino: int
    path: str
    source: Source
    fp_len: int = 0
    fp_hash: bytes = chunks.EMPTY_HASH
    det: int = 0
    det_line: int = 0
    snd: int = 0
    snd_line: int | None = 0   # None: not counted yet (after a restart with snd != det)
    acked: int = 0
    fd: int | None = None
    attached: bool = True      # found under a source pattern at the last scan (assumed
                               # for a restored row until the first scan)
    final: bool = False        # detached and idle: its last bytes are a line even without newline
    size: int = 0
    seen: tuple[int, int] | None = None   # (size, mtime_ns) when identity was last checked
    idle_since: float = 0.0    # when its size last changed (monotonic)
    dirty: bool = True         # the registry row is behind
    in_registry: bool = False  # its row was written (for a new file: before its first line went out)
    error: str | None = None   # the last open error, logged once
    real_path: str | None = None   # `path` is a symlink to this (where to look for it by inode)
    ship_paused: bool = False  # the sink was full: no shipping until it acknowledges something

    @classmethod
    def restore(cls, record: Record, source: Source) -> "Follower":
        return cls(record.file_id, record.dev, record.ino, record.path, source, fp_len=record.fp_len,
                   fp_hash=record.fp_hash, det=record.detect_offset, det_line=record.detect_line,
                   snd=record.ship_offset, acked=record.ship_offset,
                   snd_line=record.detect_line if record.ship_offset == record.detect_offset else None,
                   dirty=False, in_registry=True, real_path=record.real_path)

    def record(self) -> Record:
        return Record(self.file_id, self.dev, self.ino, self.path, self.fp_len, self.fp_hash,
                      self.det, self.det_line, self.acked, self.real_path)

    @property
    def key(self) -> tuple[int, int]:
        return self.dev, self.ino

    # --- identity -------------------------------------------------------------------------

    def observe(self, now: float) -> bool:
        """fstat the open file; False if it is no longer the file the cursors belong to.

        Same inode but shorter than a cursor (truncated: copytruncate) or other leading bytes
        (truncated and rewritten past the old cursor) means a new file. While the file is under
        1 KiB the fingerprint covers what there is and grows with it.
        """
        st = os.fstat(self.fd)
        state = (st.st_size, st.st_mtime_ns)
        if st.st_size != self.size:
            self.idle_since = now
        self.size = st.st_size
        if state == self.seen:
            return True
        if self.size < max(self.det, self.snd, self.fp_len):
            return False
        if self.fp_len < chunks.FINGERPRINT_BYTES and self.size > self.fp_len:
            head = chunks.pread(self.fd, min(self.size, chunks.FINGERPRINT_BYTES), 0)
            if chunks.fingerprint(head[:self.fp_len]) != self.fp_hash:
                return False
            self.fp_len, self.fp_hash, self.dirty = len(head), chunks.fingerprint(head), True
        elif chunks.fingerprint(chunks.pread(self.fd, self.fp_len, 0)) != self.fp_hash:
            return False
        self.seen = state
        return True

    # --- reading --------------------------------------------------------------------------

    def wants_read(self, bound: int) -> bool:
        return self._start(bound) < self.size

    def pump(self, bound: int, budget: int) -> list[Line]:
        """Hand out the lines that are due, up to about `budget` bytes of them."""
        if self.snd_line is None:
            self._count_snd_line()
        out: list[Line] = []
        pos = self._start(bound)
        while pos < self.size and budget > 0:
            block = chunks.read_block(self.fd, pos, self.size)
            if not block:
                break
            pieces = chunks.split(block, last=self.final and pos + len(block) >= self.size)
            if not pieces:
                break
            end = self._take(pieces, pos, bound, out)
            if end is None:
                # Shipping is as far ahead as the bound lets it: go on with detection alone.
                end = self.det
            else:
                budget -= end - pos
            pos = end
        return out

    def _start(self, bound: int) -> int:
        if self.snd < self.det and self._may_ship_at(self.snd, bound):
            return self.snd
        return self.det

    def _may_ship_at(self, offset: int, bound: int) -> bool:
        return bound > 0 and not self.ship_paused and (offset == self.acked or offset - self.acked < bound)

    def resend(self, offset: int) -> bool:
        """The sink took nothing from `offset` on: ship from there again, once it has room."""
        offset = max(offset, self.acked)
        if offset >= self.snd:
            return False
        self.snd, self.snd_line, self.ship_paused = offset, None, True
        return True

    def _take(self, pieces: list[chunks.Piece], offset: int, bound: int, out: list[Line]) -> int | None:
        """Hand out `pieces` (read at `offset`) as lines: for detection past `det`, for
        shipping at `snd` while the bound lets it. Returns the end of the last one, or None if
        one was for neither (shipping caught up with the bound; the rest is detection's).
        The cursors live in locals while the loop runs: this is the tailer's hot path."""
        det, det_line, snd, snd_line, acked = self.det, self.det_line, self.snd, self.snd_line, self.acked
        may_ship = bound > 0 and not self.ship_paused
        source, path, file_id = self.source, self.path, self.file_id
        stopped = False
        for text, size, newline in pieces:
            end = offset + size
            detect = offset >= det
            # The first unacknowledged line always ships; the next ones while they fit the bound.
            ship = may_ship and offset == snd and (offset == acked or end - acked <= bound)
            if not (detect or ship):
                stopped = True
                break
            # Line numbers count newlines, so a restart can recount them from the file: an
            # over-long line's pieces share one number.
            if detect:
                line_no = det_line + 1
                det, det_line = end, det_line + newline
            else:
                line_no = snd_line + 1
            if ship:
                snd, snd_line = end, snd_line + newline
            out.append(Line(source, path, file_id, offset, end, line_no, text, detect, ship))
            offset = end
        if det != self.det:
            self.dirty = True
        self.det, self.det_line, self.snd, self.snd_line = det, det_line, snd, snd_line
        return None if stopped else offset

    def _count_snd_line(self) -> None:
        if self.snd <= self.det:
            self.snd_line = self.det_line - chunks.count_newlines(self.fd, self.snd, self.det)
        else:
            self.snd_line = self.det_line + chunks.count_newlines(self.fd, self.det, self.snd)

    # --- life -----------------------------------------------------------------------------

    def done(self, shipping: bool) -> bool:
        """Detached, idle, and every byte handed out for detection (and shipping, if any)."""
        return self.final and self.det >= self.size and (self.snd >= self.size or not shipping)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
