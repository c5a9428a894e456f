"""The daemon side of the crash test: a Tailer in its own process, writing what it reads to a
file, acknowledging it as a sink would. The test kills it with SIGKILL at random points.

    python crash_tailer.py PATTERN STATE_DIR OUT_FILE PARTIAL_FLUSH_S

PARTIAL_FLUSH_S: a rotated file is let go once idle this long. While the writer runs it is an
hour, so that no stall of the writer between a rotation and its late lines to the old file can
make the outcome differ (the files are read to their end regardless); the last life, started
after the writer exited, lets them go at once.

OUT_FILE (appended with unbuffered os.write, so a SIGKILL loses nothing already written; a
write cut by the kill leaves at most an incomplete last line):
    S                                   the Tailer is constructed
    G <n>                               read() returned n lines; what follows is that batch
    L <detect><ship> <file_id> <offset> <end> <line_no> <text>    one line (flags 0/1)
Each batch is written whole before the sink acknowledges it (`shipped`) and before the next
read() commits its detection cursor: the write is the sink holding the lines.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from faultwarden.daemon import logs
from faultwarden.daemon.config import Source
from faultwarden.daemon.tail import Tailer


def main(pattern: str, state_dir: str, out_file: str, partial_flush_s: str) -> int:
    logs.configure(stream=sys.stderr)
    out = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(text: str) -> None:
        data = text.encode()
        while data:
            data = data[os.write(out, data):]

    t = Tailer([Source(paths=[pattern])], Path(state_dir), poll_s=0.2,
               partial_flush_s=float(partial_flush_s))
    write("S\n")
    while True:   # until SIGKILL
        lines = t.read(0.1)
        if not lines:
            continue
        write(f"G {len(lines)}\n")
        write("".join(f"L {line.detect:d}{line.ship:d} {line.file_id} {line.offset} {line.end} "
                      f"{line.line_no} {line.text}\n" for line in lines))
        acked: dict[str, int] = {}
        for line in lines:
            if line.ship:
                acked[line.file_id] = line.end
        for file_id, end in acked.items():
            t.shipped(file_id, end)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
