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
    assert chunks.split(block, last=False) == [("one", 4, True), ("two", 5, True)]
    assert chunks.split(block, last=True)[-1] == ("thr", 3, False)


def test_bad_utf8_is_replaced_not_dropped_and_sizes_stay_in_bytes():
    block = b"loss \xff\xfe nan\n\xc3\xa9t\xc3\xa9 \xe2\x82\nend\r\n"
    assert chunks.split(block, last=False) == [
        ("loss \ufffd\ufffd nan", 12, True), ("\u00e9t\u00e9 \ufffd", 9, True), ("end", 5, True)]


def test_an_over_long_line_comes_in_pieces_of_the_longest_length():
    block = b"x" * (chunks.MAX_LINE_BYTES + 10)
    (piece,) = chunks.split(block, last=False)
    assert piece == ("x" * chunks.MAX_LINE_BYTES, chunks.MAX_LINE_BYTES, False)


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
