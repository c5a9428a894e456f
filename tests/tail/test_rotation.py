"""Rotation in its forms: rename-and-create, copytruncate, delete-and-recreate, a symlink turned
to another file, and an inode that comes to hold other bytes. Every case is provoked on purpose."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .helpers import append, read_texts, read_until, texts


def test_rename_rotation_reads_the_old_file_to_its_end_and_the_new_from_its_start(h):
    log = h.logs / "train.log"
    writer = open(log, "a", buffering=1, encoding="utf-8")   # the job: keeps its handle
    try:
        writer.write("old 1\nold 2\n")
        t = h.tailer(log)
        before = read_texts(t, ["old 1", "old 2"])

        os.rename(log, h.logs / "train.log.1")      # logrotate's default
        append(log, "new 1\n")                       # the fresh file under the old name
        writer.write("old 3 after the rename\n")     # the job has not reopened yet
        got = read_until(t, lambda ls: len(ls) >= 2)
    finally:
        writer.close()

    by_file = {}
    for line in got:
        by_file.setdefault(line.file_id, []).append(line)
    old_id = before[0].file_id
    assert texts(by_file.pop(old_id)) == ["old 3 after the rename"]
    ((new_id, new_lines),) = by_file.items()
    assert texts(new_lines) == ["new 1"]
    assert (new_lines[0].offset, new_lines[0].line_no) == (0, 1)
    assert new_id != old_id
    assert t.read(0.3) == []


def test_copytruncate_starts_the_file_again_from_zero(h):
    log = h.logs / "serve.log"
    append(log, "".join(f"request {i}\n" for i in range(5)))
    t = h.tailer(log)
    before = read_texts(t, [f"request {i}" for i in range(5)])

    shutil.copyfile(log, h.logs / "serve.log.1")     # logrotate copytruncate
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, "fresh 1\nfresh 2\n")                # shorter than the old cursor
    got = read_texts(t, ["fresh 1", "fresh 2"])
    assert [(x.offset, x.line_no) for x in got] == [(0, 1), (8, 2)]
    assert got[0].file_id != before[0].file_id
    assert os.stat(log).st_ino == int(got[0].file_id.split(".")[1], 16)   # same inode, new file


def test_same_inode_with_other_leading_bytes_is_a_new_file(h):
    log = h.logs / "job.log"
    append(log, "aaaa\n" * 3)                         # 15 bytes
    t = h.tailer(log)
    before = read_texts(t, ["aaaa"] * 3)
    inode = os.stat(log).st_ino

    # Truncated and rewritten longer than the old cursor in one go (the tailer reads only inside
    # read(), so it cannot see the empty moment): only the fingerprint can tell.
    with open(log, "r+b") as fh:
        fh.truncate(0)
        fh.write(b"bbbbbbbb\n" * 5)                  # 45 bytes > 15
    assert os.stat(log).st_ino == inode
    got = read_texts(t, ["bbbbbbbb"] * 5)
    assert got[0].file_id != before[0].file_id
    assert [x.line_no for x in got] == [1, 2, 3, 4, 5]
    assert got[0].offset == 0
    t.read(0)
    assert list(h.registry_rows()) == [got[0].file_id]   # the old row is gone


def test_delete_and_recreate_reads_the_new_file_and_forgets_the_old(h):
    log = h.logs / "eval.log"
    append(log, "first life\n")
    t = h.tailer(log, partial_flush_s=0.2)
    (old,) = read_texts(t, ["first life"])
    t.shipped(old.file_id, old.end)

    os.unlink(log)
    append(log, "second life\n")
    (new,) = read_texts(t, ["second life"])
    assert new.file_id != old.file_id
    assert (new.offset, new.line_no) == (0, 1)

    # The deleted file, read to its end and idle, is let go and leaves the registry.
    read_until(t, lambda _: old.file_id not in {f["file_id"] for f in t.files()}, what="let go")
    t.read(0)
    assert list(h.registry_rows()) == [new.file_id]


def test_symlink_turned_to_another_file(h):
    runs = h.tmp / "runs"
    runs.mkdir()
    link = h.logs / "current.log"
    append(runs / "run1.log", "run1 a\n")
    os.symlink(runs / "run1.log", link)
    t = h.tailer(link)
    (first,) = read_texts(t, ["run1 a"])
    assert first.path == str(link)

    append(runs / "run2.log", "run2 a\n")
    os.symlink(runs / "run2.log", h.logs / "next.tmp")
    os.replace(h.logs / "next.tmp", link)          # atomic swap, as deploy tools do
    append(runs / "run1.log", "run1 b, written late\n")
    got = read_until(t, lambda ls: len(ls) >= 2)
    assert sorted(texts(got)) == ["run1 b, written late", "run2 a"]
    late = next(x for x in got if x.text.startswith("run1"))
    assert late.file_id == first.file_id and late.line_no == 2
    new = next(x for x in got if x.text.startswith("run2"))
    assert new.file_id != first.file_id and (new.offset, new.line_no) == (0, 1)


def test_last_line_without_newline_is_flushed_once_the_rotated_file_is_idle(h):
    log = h.logs / "train.log"
    append(log, "complete\nKilled")       # the job died mid-line
    t = h.tailer(log, partial_flush_s=0.3)
    read_texts(t, ["complete"])
    assert t.read(0.5) == []              # in place: held, it may yet be completed
    os.rename(log, h.logs / "train.log.1")
    (last,) = read_until(t, lambda ls: len(ls) >= 1)
    assert (last.text, last.offset, last.end, last.line_no) == ("Killed", 9, 15, 2)
    assert last.detect and last.ship


def two_files_one_open(h):
    """Two files read under max_open=1: the tailer and the one it had to close."""
    a, b = h.logs / "a.log", h.logs / "b.log"
    append(a, "a 1\n")
    append(b, "b 1\n")
    t = h.tailer(a, b, max_open=1)
    read_until(t, lambda ls: len(ls) >= 2)
    return t, next(f for f in t.files() if not f["open"])


def test_file_closed_for_the_open_bound_then_renamed_is_found_by_inode(h):
    t, closed = two_files_one_open(h)
    path = Path(closed["path"])

    os.rename(path, h.logs / (path.name + ".1"))     # out of the patterns, while closed
    append(h.logs / (path.name + ".1"), "written after the rename\n")
    (late,) = read_until(t, lambda ls: len(ls) >= 1)
    assert (late.file_id, late.text, late.line_no) == (closed["file_id"], "written after the rename", 2)
    assert t.open_files <= 1 + 1     # a detached file may pass the bound until it is done


def test_file_deleted_while_closed_is_forgotten(h):
    # Only an open handle keeps a deleted file's bytes: what it had not read is lost (documented).
    t, closed = two_files_one_open(h)
    os.unlink(closed["path"])
    read_until(t, lambda _: closed["file_id"] not in {f["file_id"] for f in t.files()}, what="forgotten")
    t.read(0)
    assert closed["file_id"] not in h.registry_rows()
    assert len(h.registry_rows()) == 1
