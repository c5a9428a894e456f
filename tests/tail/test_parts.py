"""The tailer's parts on their own: pattern matching, line splitting, the registry."""
from __future__ import annotations

import pytest

from faultwarden.daemon.tail import RegistryError, Tailer, chunks
from faultwarden.daemon.tail.paths import Patterns
from faultwarden.daemon.tail.registry import Record, Registry


def test_patterns_match_like_glob_with_recursive_double_star(tmp_path):
    p = Patterns([[f"{tmp_path}/jobs/**/*.log"], [f"{tmp_path}/jobs/*.txt", f"{tmp_path}/other.log"]])
    assert p.source_of(f"{tmp_path}/jobs/a.log") == 0          # `**` matches no folder too
    assert p.source_of(f"{tmp_path}/jobs/x/y/a.log") == 0
    assert p.source_of(f"{tmp_path}/jobs/a.txt") == 1
    assert p.source_of(f"{tmp_path}/other.log") == 1
    assert p.source_of(f"{tmp_path}/jobs/x/a.txt") is None     # `*` stays in one folder
    assert p.source_of(f"{tmp_path}/elsewhere.log") is None


def test_watch_roots_stand_in_for_missing_folders(tmp_path):
    (tmp_path / "jobs").mkdir()
    p = Patterns([[f"{tmp_path}/jobs/**/*.log", f"{tmp_path}/jobs/train.log",
                   f"{tmp_path}/not/yet/*.log"]])
    assert p.watch_roots() == {(f"{tmp_path}/jobs", True), (f"{tmp_path}/jobs", False),
                               (str(tmp_path), False)}


def test_split_holds_an_unfinished_line_unless_the_file_is_done():
    block = b"one\ntwo\r\nthr"
    pieces = chunks.split(block, 100, last=False)
    assert [(x.offset, x.end, chunks.decode(x)) for x in pieces] == [(100, 104, "one"), (104, 109, "two")]
    final = chunks.split(block, 100, last=True)
    assert (final[-1].offset, final[-1].end, final[-1].data, final[-1].newline) == (109, 112, b"thr", False)


def test_bad_utf8_is_replaced_not_dropped():
    (piece,) = chunks.split(b"loss \xff\xfe nan\n", 0, last=False)
    assert chunks.decode(piece) == "loss \ufffd\ufffd nan"


def test_registry_round_trip_and_forget(tmp_path):
    reg = Registry(tmp_path)
    row = Record("1.2.3", 1, 2, "/x.log", 10, b"h" * 32, 40, 4, 20)
    reg.save([row])
    reg.ship("1.2.3", 30)
    reg.close()
    reg = Registry(tmp_path)
    (again,) = reg.load()
    assert again.ship_offset == 30 and again.detect_offset == 40 and again.path == "/x.log"
    reg.forget(["1.2.3"])
    assert reg.load() == []
    reg.close()


def test_unusable_registry_is_a_clear_error_naming_the_file(tmp_path):
    (tmp_path / "tail.sqlite").write_bytes(b"this is not sqlite " * 100)
    with pytest.raises(RegistryError) as err:
        Tailer([], tmp_path)
    assert str(tmp_path / "tail.sqlite") in str(err.value)
    assert "move it away" in str(err.value)
