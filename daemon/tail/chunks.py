"""Reading a file by byte offsets: blocks cut into lines, newline counts, the fingerprint.

Everything reads with os.pread, so one open file serves both cursors (detection and shipping)
without seeking back and forth.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

FINGERPRINT_BYTES = 1024
READ_BYTES = 256 << 10
# A line longer than this is handed out in pieces of this size rather than held without end
# (Fluent Bit drops the whole file instead, Vector drops the line; both lose data).
MAX_LINE_BYTES = 1 << 20
EMPTY_HASH = hashlib.sha256(b"").digest()


def pread(fd: int, size: int, offset: int) -> bytes:
    """Up to `size` bytes at `offset`; fewer only at the end of the file."""
    parts = []
    while size > 0:
        data = os.pread(fd, size, offset)
        if not data:
            break
        parts.append(data)
        size -= len(data)
        offset += len(data)
    return b"".join(parts)


def fingerprint(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class Piece:
    offset: int
    end: int
    data: bytes      # without the newline
    newline: bool    # False: an over-long line's piece, or a file's last line left without one


def read_block(fd: int, pos: int, size: int) -> bytes:
    """Bytes from `pos` up to `size`: a block, lengthened until it holds one newline (or is as
    long as a line may be), so that every block yields at least one piece when it can."""
    block = pread(fd, min(READ_BYTES, size - pos), pos)
    while b"\n" not in block and len(block) < MAX_LINE_BYTES and pos + len(block) < size:
        more = pread(fd, min(READ_BYTES, MAX_LINE_BYTES - len(block), size - pos - len(block)),
                     pos + len(block))
        if not more:
            break
        block += more
    return block


def split(block: bytes, base: int, *, last: bool) -> list[Piece]:
    """The pieces in `block` (read at offset `base`).

    Complete lines always; then an over-long line's first MAX_LINE_BYTES; then, if `last` (the
    file is done growing and the block reaches its end), the bytes left without a newline.
    """
    pieces = []
    start = 0
    while (nl := block.find(b"\n", start)) >= 0:
        pieces.append(Piece(base + start, base + nl + 1, block[start:nl], True))
        start = nl + 1
    rest = len(block) - start
    if rest >= MAX_LINE_BYTES:
        pieces.append(Piece(base + start, base + start + MAX_LINE_BYTES,
                            block[start:start + MAX_LINE_BYTES], False))
    elif rest and last:
        pieces.append(Piece(base + start, base + len(block), block[start:], False))
    return pieces


def count_newlines(fd: int, start: int, end: int) -> int:
    count = 0
    while start < end:
        block = pread(fd, min(READ_BYTES, end - start), start)
        if not block:
            break
        count += block.count(b"\n")
        start += len(block)
    return count


def decode(piece: Piece) -> str:
    """The line's text: UTF-8 (bad bytes replaced, never dropped), without a CRLF's CR."""
    data = piece.data
    if piece.newline and data.endswith(b"\r"):
        data = data[:-1]
    return data.decode("utf-8", errors="replace")
