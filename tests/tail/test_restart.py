"""Restarts: the detection cursor resumes exactly, the shipping cursor re-reads what the sink did
not acknowledge, and a crash repeats at most the batch in hand (at-least-once)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from .helpers import DEADLINE_S, append, read_texts, read_until, texts


def test_restart_resumes_detection_exactly_and_reships_from_the_shipping_cursor(h):
    log = h.logs / "train.log"
    append(log, "".join(f"step {i}\n" for i in range(1, 6)))
    t = h.tailer(log)
    got = read_texts(t, [f"step {i}" for i in range(1, 6)])
    t.shipped(got[1].file_id, got[1].end)      # the sink acknowledged steps 1-2 only
    t.close()

    append(log, "step 6\nstep 7\n")            # written while the daemon was down
    t = h.tailer(log)
    again = read_until(t, lambda ls: len(ls) >= 5)
    assert [(x.text, x.detect, x.ship, x.line_no) for x in again] == [
        ("step 3", False, True, 3), ("step 4", False, True, 4), ("step 5", False, True, 5),
        ("step 6", True, True, 6), ("step 7", True, True, 7)]
    assert {x.file_id for x in again} == {got[0].file_id}
    assert again[0].offset == got[2].offset
    assert t.read(0.3) == []


def test_restart_with_everything_shipped_repeats_nothing(h):
    log = h.logs / "train.log"
    append(log, "a\nb\n")
    t = h.tailer(log)
    got = read_texts(t, ["a", "b"])
    t.shipped(got[-1].file_id, got[-1].end)
    t.close()
    t = h.tailer(log)
    assert t.read(0.5) == []
    append(log, "c\n")
    (c,) = read_texts(t, ["c"])
    assert (c.line_no, c.detect, c.ship) == (3, True, True)


def test_file_rotated_while_down_is_found_by_inode_and_read_to_its_end(h):
    log = h.logs / "train.log"
    append(log, "before\n")
    t = h.tailer(log, partial_flush_s=0.2)
    (before,) = read_texts(t, ["before"])
    t.close()

    append(log, "missed while down\n")
    os.rename(log, h.logs / "train.log.1")      # not matched by the pattern any more
    append(log, "new file\n")
    t = h.tailer(log, partial_flush_s=0.2)
    got = read_until(t, lambda ls: len(ls) >= 3)  # the old file's two lines re-shipped or new
    old = [x for x in got if x.file_id == before.file_id]
    assert [(x.text, x.detect, x.ship) for x in old] == [
        ("before", False, True), ("missed while down", True, True)]
    assert texts([x for x in got if x.file_id != before.file_id]) == ["new file"]


CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from faultwarden.daemon import logs
    from faultwarden.daemon.config import Source
    from faultwarden.daemon.tail import Tailer
    logs.configure(stream=sys.stderr)   # stdout carries only the lines and the markers
    t = Tailer([Source(paths=[sys.argv[1]])], Path(sys.argv[2]), poll_s=0.2)
    seen = 0
    while True:
        lines = t.read(0.2)
        seen += len(lines)
        for line in lines:
            print(line.text, flush=True)
        if seen >= int(sys.argv[3]):
            print("HANDED-OUT", flush=True)
            break
    t.read(0)          # commits the lines above, then picks up nothing
    append = open(sys.argv[1], "a")
    append.write("late 1\\nlate 2\\n")
    append.close()
    lines = t.read(30)  # the batch in hand when the process is killed
    print("BATCH", len(lines), flush=True)
    import time
    time.sleep(60)
""")


def test_crash_repeats_only_the_batch_in_hand(h):
    log = h.logs / "train.log"
    append(log, "".join(f"line {i}\n" for i in range(4)))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(log), str(h.state), "4"],
                             stdout=subprocess.PIPE, text=True)
    try:
        out = []
        for raw in child.stdout:
            out.append(raw.strip())
            if raw.startswith("BATCH"):
                break
        assert out[-2:] == ["HANDED-OUT", "BATCH 2"], out
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=DEADLINE_S)

    t = h.tailer(log)
    again = read_until(t, lambda ls: len(ls) >= 6)
    # Committed lines stay detected; the two handed out but never confirmed by a next read()
    # come again for detection (at-least-once). Nothing was acknowledged, so all re-ship.
    assert [(x.text, x.detect) for x in again] == [
        ("line 0", False), ("line 1", False), ("line 2", False), ("line 3", False),
        ("late 1", True), ("late 2", True)]
    assert all(x.ship for x in again)


def test_file_replaced_in_place_while_down_is_read_from_its_start(h):
    log = h.logs / "train.log"
    append(log, "old run\n")
    t = h.tailer(log)
    (old,) = read_texts(t, ["old run"])
    t.shipped(old.file_id, old.end)
    t.close()

    with open(log, "r+b") as fh:                    # same inode, other bytes, longer
        fh.truncate(0)
        fh.write(b"new run 1\nnew run 2\n")
    t = h.tailer(log)
    got = read_texts(t, ["new run 1", "new run 2"])
    assert got[0].file_id != old.file_id and got[0].offset == 0
    t.read(0)
    assert list(h.registry_rows()) == [got[0].file_id]


def test_symlink_turned_while_down_still_finds_its_old_target_in_another_folder(h):
    # The old target is found by inode: in the link's folder it is not, in the target's folder
    # it is (the registry keeps where the link pointed).
    runs = h.tmp / "runs"
    runs.mkdir()
    link = h.logs / "current.log"
    append(runs / "a.log", "a 1\n")
    os.symlink(runs / "a.log", link)
    t = h.tailer(link, partial_flush_s=0.2)
    (first,) = read_texts(t, ["a 1"])
    t.close()

    append(runs / "a.log", "a 2, written while the daemon was down\n")
    append(runs / "b.log", "b 1\n")
    os.symlink(runs / "b.log", h.logs / "next.tmp")
    os.replace(h.logs / "next.tmp", link)
    t = h.tailer(link, partial_flush_s=0.2)
    got = read_until(t, lambda ls: len([x for x in ls if x.detect]) >= 2)
    old = [x for x in got if x.file_id == first.file_id and x.detect]
    assert [(x.text, x.line_no) for x in old] == [("a 2, written while the daemon was down", 2)]
    assert texts([x for x in got if x.file_id != first.file_id]) == ["b 1"]


def test_a_crash_replays_a_new_files_first_batch_under_the_same_file_id(h):
    # The first lines of a file never seen before go out in one batch; the process dies before
    # the next read() commits. The file's row was written before those lines went out, so the
    # replay carries the same (file_id, offset) pairs: the sink's document ids tell the repeat.
    log = h.logs / "train.log"
    append(log, "one\ntwo\n")
    crashed = h.tailer(log)
    batch = read_texts(crashed, ["one", "two"])      # in hand, never committed
    again = read_texts(h.tailer(log), ["one", "two"])  # another process on the same state dir
    assert [(x.file_id, x.offset, x.detect, x.ship) for x in again] == [
        (x.file_id, x.offset, True, True) for x in batch]


def test_a_registry_of_the_first_schema_is_upgraded_in_place(h):
    import sqlite3

    from faultwarden.daemon.tail.registry import Record, Registry

    h.state.mkdir()
    db = sqlite3.connect(h.state / "tail.sqlite")
    db.executescript("""
        CREATE TABLE files (file_id TEXT PRIMARY KEY, dev INTEGER NOT NULL, ino INTEGER NOT NULL,
            path TEXT NOT NULL, fp_len INTEGER NOT NULL, fp_hash BLOB NOT NULL,
            detect_offset INTEGER NOT NULL, detect_line INTEGER NOT NULL, ship_offset INTEGER NOT NULL);
        INSERT INTO files VALUES ('1.2.3', 1, 2, '/logs/a.log', 4, x'00', 4, 1, 0);
        PRAGMA user_version=1;
    """)
    db.close()
    registry = Registry(h.state)
    try:
        assert registry.load() == [Record("1.2.3", 1, 2, "/logs/a.log", 4, b"\0", 4, 1, 0, None)]
        registry.save([Record("1.2.3", 1, 2, "/logs/a.log", 4, b"\0", 8, 2, 4, "/runs/a.log")])
        assert registry.load()[0].real_path == "/runs/a.log"
    finally:
        registry.close()
