"""Reading a file by byte offsets: blocks cut into lines, newline counts, the fingerprint.

Everything reads with os.pread, so one open file serves both cursors (detection and shipping)
without seeking back and forth.
"""
from __future__ import annotations

import hashlib
import os

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


# One line of a block: (text, bytes it takes in the file, ended by a newline). The text is UTF-8
# decoded (bad bytes replaced, never dropped), without the newline nor a CRLF's CR.
Piece = tuple[str, int, bool]


def split(block: bytes, *, last: bool) -> list[Piece]:
    """The pieces in `block`, in order.

    Complete lines always; then an over-long line's first MAX_LINE_BYTES; then, if `last` (the
    file is done growing and the block reaches its end), the bytes left without a newline.
    The complete lines are decoded in one go (a newline byte never belongs to a multi-byte
    character, so the text splits where the bytes do): this is the tailer's hot path.
    """
    cut = block.rfind(b"\n") + 1
    pieces: list[Piece] = []
    if cut:
        whole = block if cut == len(block) else block[:cut]
        texts = whole.decode("utf-8", "replace").split("\n")
        texts.pop()   # after the last newline
        if whole.isascii():
            sizes = map(len, texts)
        else:
            sizes = map(len, whole.split(b"\n"))
        if b"\r" in whole:
            pieces = [(text[:-1] if text[-1:] == "\r" else text, size + 1, True)
                      for text, size in zip(texts, sizes)]
        else:
            pieces = [(text, size + 1, True) for text, size in zip(texts, sizes)]
    rest = len(block) - cut
    if rest >= MAX_LINE_BYTES:
        pieces.append((decode(block[cut:cut + MAX_LINE_BYTES]), MAX_LINE_BYTES, False))
    elif rest and last:
        pieces.append((decode(block[cut:]), rest, False))
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


def decode(data: bytes) -> str:
    """UTF-8, bad bytes replaced (never dropped)."""
    return data.decode("utf-8", errors="replace")
