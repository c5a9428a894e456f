"""Reading lines: appends, partial lines, small files, over-long lines, back-pressure."""
from __future__ import annotations

import os
import threading

from faultwarden.daemon.tail import chunks

from .helpers import DEADLINE_S, append, read_texts, read_until, texts


def test_appended_lines_come_out_once_with_offsets_and_numbers(h):
    log = h.logs / "train.log"
    append(log, "step 1\nstep 2\n")
    t = h.tailer(log)
    first = read_texts(t, ["step 1", "step 2"])
    assert [(x.offset, x.end, x.line_no) for x in first] == [(0, 7, 1), (7, 14, 2)]
    assert all(x.detect and x.ship and x.path == str(log) for x in first)
    assert len({x.file_id for x in first}) == 1
    assert first[0].source.paths == [str(log)]

    append(log, "step 3\r\n")
    (third,) = read_texts(t, ["step 3"])
    assert (third.offset, third.end, third.line_no) == (14, 22, 3)
    assert third.file_id == first[0].file_id
    assert t.read(0.3) == []


def test_partial_line_is_held_until_its_newline(h):
    log = h.logs / "train.log"
    append(log, "one\nhal")
    t = h.tailer(log)
    read_texts(t, ["one"])
    assert t.read(0.5) == []          # "hal" waits: the writer is mid-line
    append(log, "f")
    assert t.read(0.5) == []
    append(log, "way\n")
    (line,) = read_texts(t, ["halfway"])
    assert (line.offset, line.end, line.line_no) == (4, 12, 2)


def test_file_shorter_than_the_fingerprint_is_read_at_once_and_not_again_as_it_grows(h):
    log = h.logs / "crash.log"
    append(log, "Traceback (most recent call last):\n")
    t = h.tailer(log)
    read_texts(t, ["Traceback (most recent call last):"])
    t.read(0)   # commits the detection cursor
    (row,) = h.registry_rows().values()
    assert row[1] == 35                 # fingerprint over the 35 bytes there were

    filler = [f"  frame {i:04d} " + "x" * 40 for i in range(30)]   # past 1 KiB
    append(log, "".join(f"{x}\n" for x in filler))
    got = read_texts(t, filler)
    assert got[0].line_no == 2
    t.read(0)
    (row,) = h.registry_rows().values()
    assert row[1] == chunks.FINGERPRINT_BYTES


def test_over_long_line_comes_in_pieces_sharing_its_number(h):
    log = h.logs / "big.log"
    big = "y" * (chunks.MAX_LINE_BYTES + 10)
    append(log, big + "\nafter\n")
    t = h.tailer(log)
    got = read_until(t, lambda ls: "after" in texts(ls))
    assert [len(x.text) for x in got] == [chunks.MAX_LINE_BYTES, 10, 5]
    assert [x.line_no for x in got] == [1, 1, 2]
    assert got[1].offset == got[0].end


def test_back_pressure_detection_goes_on_and_shipping_catches_up_from_the_file(h):
    log = h.logs / "fast.log"
    lines = [f"line-{i:04d}" for i in range(10)]   # 10 bytes each with the newline
    append(log, "".join(f"{x}\n" for x in lines))
    t = h.tailer(log, max_unshipped_bytes=50)
    got = read_texts(t, lines)
    assert all(x.detect for x in got)
    assert [x.ship for x in got] == [True] * 5 + [False] * 5
    assert t.read(0.3) == []           # nothing acknowledged: shipping stays put

    append(log, "line-0010\n")          # still detected at once, still not shipped
    (late,) = read_texts(t, ["line-0010"])
    assert (late.detect, late.ship) == (True, False)

    t.shipped(got[4].file_id, got[4].end)       # the sink took the first five
    again = read_until(t, lambda ls: len(ls) >= 5)
    assert texts(again) == lines[5:]
    assert all(x.ship and not x.detect for x in again)
    assert [x.line_no for x in again] == [6, 7, 8, 9, 10]

    t.shipped(again[-1].file_id, again[-1].end)
    (last,) = read_until(t, lambda ls: len(ls) >= 1)
    assert (last.text, last.detect, last.ship, last.line_no) == ("line-0010", False, True, 11)
    t.shipped(last.file_id, last.end)
    assert t.read(0.3) == []


def test_shipped_from_another_thread_wakes_a_waiting_read(h):
    log = h.logs / "fast.log"
    append(log, "".join(f"line-{i:04d}\n" for i in range(4)))
    t = h.tailer(log, max_unshipped_bytes=20, poll_s=60)
    got = read_until(t, lambda ls: len(ls) >= 4)
    assert [x.ship for x in got] == [True, True, False, False]
    result = []
    reader = threading.Thread(target=lambda: result.extend(t.read(30)))
    reader.start()
    t.shipped(got[1].file_id, got[1].end)
    reader.join(DEADLINE_S)
    assert texts(result) == ["line-0002", "line-0003"]
    assert all(x.ship and not x.detect for x in result)


def test_without_a_sink_lines_go_to_detection_only(h):
    log = h.logs / "train.log"
    append(log, "a\nb\n")
    t = h.tailer(log, max_unshipped_bytes=0, partial_flush_s=0.2)
    got = read_texts(t, ["a", "b"])
    assert [(x.detect, x.ship) for x in got] == [(True, False), (True, False)]
    os.unlink(log)     # and a file gone is let go without waiting for a sink
    read_until(t, lambda _: t.files() == [], what="let go")
    t.read(0)
    assert h.registry_rows() == {}


def test_lines_the_sink_had_no_room_for_ship_again_after_an_acknowledgement(h):
    log = h.logs / "train.log"
    append(log, "a\nb\nc\n")
    t = h.tailer(log)
    a, b, c = read_texts(t, ["a", "b", "c"])
    t.resend(a.file_id, b.offset)  # the sink took `a` only
    append(log, "d\n")
    (d,) = read_texts(t, ["d"])
    assert d.detect and not d.ship  # detection goes on; shipping waits for room
    assert t.read(0.3) == []  # no busy re-reading while the sink is full
    t.shipped(a.file_id, a.end)  # room again
    again = read_until(t, lambda got: len(got) >= 3)
    assert [(x.text, x.detect, x.ship, x.line_no) for x in again] == [
        ("b", False, True, 2), ("c", False, True, 3), ("d", False, True, 4)]
