"""Finding files: globs matched later (new subfolders for `**`), many files under an open-file
bound, and an idle read() that sleeps instead of spinning."""
from __future__ import annotations

import time

from faultwarden.daemon.tail import tailer as tailer_module

from .helpers import append, read_texts, read_until, texts


def test_files_created_later_under_a_glob_are_picked_up(h):
    t = h.tailer(h.logs / "*.log", poll_s=60)     # only file system events can wake it in time
    assert t.read(0.2) == []
    append(h.logs / "a.log", "hello from a\n")
    append(h.logs / "ignored.txt", "not a log\n")
    (line,) = read_texts(t, ["hello from a"])
    assert line.path == str(h.logs / "a.log")


def test_recursive_glob_sees_a_file_in_a_new_subfolder(h):
    t = h.tailer(h.logs / "**" / "*.log", poll_s=60)
    append(h.logs / "top.log", "top\n")
    read_texts(t, ["top"])
    deep = h.logs / "run-7" / "rank-0"
    deep.mkdir(parents=True)
    append(deep / "worker.log", "deep\n")
    (line,) = read_texts(t, ["deep"])
    assert line.path == str(deep / "worker.log")


class NoEvents:
    """A file system that sends no events (NFS, some FUSE mounts): only the poll can find files."""

    def __init__(self, wake):
        pass

    def drain(self):
        return set(), set()

    def update(self, roots):
        pass

    def close(self):
        pass


def test_polling_finds_new_and_grown_files_when_no_event_comes(h, monkeypatch):
    monkeypatch.setattr(tailer_module, "Watcher", NoEvents)
    t = h.tailer(h.tmp / "later" / "*.log", poll_s=0.2)
    assert t.read(0.3) == []
    (h.tmp / "later").mkdir()
    append(h.tmp / "later" / "job.log", "arrived\n")
    read_texts(t, ["arrived"])
    append(h.tmp / "later" / "job.log", "grew\n")
    read_texts(t, ["grew"])


def test_a_thousand_files_with_at_most_64_open(h):
    names = [h.logs / f"rank-{i:04d}.log" for i in range(1000)]
    for path in names:
        append(path, f"{path.name} 1\n{path.name} 2\n")
    t = h.tailer(h.logs / "*.log", max_open=64)
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 2000 and time.monotonic() < deadline:
        got += t.read(0.2)
        assert t.open_files <= 64
    assert sorted(texts(got)) == sorted(f"{p.name} {n}" for p in names for n in (1, 2))

    # Files closed to stay under the bound are opened again, by identity, when they grow.
    for path in names[::100]:
        append(path, f"{path.name} 3\n")
    more = read_until(t, lambda ls: len(ls) >= 10)
    assert sorted(texts(more)) == sorted(f"{p.name} 3" for p in names[::100])
    assert all(x.line_no == 3 for x in more)
    assert t.open_files <= 64


def test_idle_read_sleeps_instead_of_spinning(h):
    log = h.logs / "quiet.log"
    append(log, "only line\n")
    t = h.tailer(log, poll_s=0.5)
    read_texts(t, ["only line"])
    cpu = time.process_time()
    assert t.read(2.0) == []
    # CPU time of the whole process (all threads), not wall time: a busy loop would burn ~2 s.
    assert time.process_time() - cpu < 0.5
