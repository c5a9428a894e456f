"""Multi-line records: Python tracebacks (from real processes), multiline_start, the bound."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from faultwarden.daemon.parse import Parser
from faultwarden.daemon.parse.parser import MAX_RECORD_CHARS, MAX_RECORD_LINES

from .helpers import NOW, run, source


def _stderr_of(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1, done
    return done.stderr.rstrip("\n")


def test_real_traceback_is_one_event_at_its_first_line():
    crash = _stderr_of("""
        def allocate(n):
            raise RuntimeError(f"CUDA out of memory. Tried to allocate {n} GiB")
        def step():
            allocate(2)
        step()
    """)
    before = '{"message": "step 1", "loss": 0.5}'
    lines = [before, *crash.splitlines(), "2024-05-01 12:00:00,000 - trainer - INFO - restarting"]
    events = run(lines)
    assert len(events) == 3
    tb = events[1]
    assert tb["log.file.line"] == 2
    assert tb["log.offset"] == len(before) + 1
    assert tb["error.type"] == "RuntimeError"
    assert tb["error.message"] == "CUDA out of memory. Tried to allocate 2 GiB"
    assert tb["error.stack_trace"] == crash
    assert tb["message"] == crash
    assert tb["log.level"] == "error"
    assert tb["@timestamp"] == NOW
    assert events[2]["message"] == "restarting" and events[2]["log.file.line"] == len(lines)


def test_chained_exceptions_report_the_last_one():
    crash = _stderr_of("""
        try:
            {}["batch"]
        except KeyError as e:
            raise ValueError("bad batch") from e
    """)
    assert "direct cause" in crash
    events = run([*crash.splitlines(), "next"])
    assert len(events) == 2
    assert events[0]["error.type"] == "ValueError" and events[0]["error.message"] == "bad batch"
    assert "KeyError" in events[0]["error.stack_trace"]
    assert events[1]["message"] == "next"


def test_exception_during_handling_and_exception_group():
    during = _stderr_of("""
        try:
            1 / 0
        except ZeroDivisionError:
            raise OSError("No space left on device")
    """)
    event, = run(during.splitlines())
    assert (event["error.type"], event["error.message"]) == ("OSError", "No space left on device")
    group = _stderr_of("""
        raise ExceptionGroup("workers failed", [ValueError("rank 1"), TypeError("rank 2")])
    """)
    events = run([*group.splitlines(), "after"])
    assert len(events) == 2
    assert events[0]["error.type"] == "ExceptionGroup"
    assert events[0]["error.message"].startswith("workers failed")
    assert "rank 2" in events[0]["error.stack_trace"]


def test_torch_oom_type_is_qualified():
    text = [
        "Traceback (most recent call last):",
        '  File "/srv/train.py", line 88, in <module>',
        "    loss.backward()",
        '  File "/venv/lib/python3.11/site-packages/torch/_tensor.py", line 522, in backward',
        "    torch.autograd.backward(",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
        "total capacity of 79.15 GiB of which 1.50 GiB is free.",
    ]
    event, = run(text)
    assert event["error.type"] == "torch.OutOfMemoryError"
    assert event["error.message"].startswith("CUDA out of memory. Tried to allocate 2.00 GiB.")


def test_two_tracebacks_in_a_row_are_two_events():
    one = ["Traceback (most recent call last):", '  File "a.py", line 1, in <module>', "KeyboardInterrupt"]
    events = run(one + one)
    assert [e["log.file.line"] for e in events] == [1, 4]
    assert events[0]["error.type"] == "KeyboardInterrupt" and events[0]["error.message"] == ""


def test_traceback_at_the_end_waits_for_flush():
    parser = Parser(host="h")
    lines = ["Traceback (most recent call last):", '  File "a.py", line 1, in <module>',
             "MemoryError"]
    for number, line in enumerate(lines, 1):
        assert parser.feed(line, path="p", offset=number * 10, line_no=number, now=5.0) == []
    event, = parser.flush()
    assert event["error.type"] == "MemoryError" and event["log.offset"] == 10
    assert parser.flush() == []


def test_interleaved_rank_tracebacks_are_joined_per_rank():
    lines = [
        "[rank1]: Traceback (most recent call last):",
        "[rank0]: Traceback (most recent call last):",
        '[rank1]:   File "/srv/train.py", line 9, in <module>',
        '[rank0]:   File "/srv/train.py", line 9, in <module>',
        "[rank1]: torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970",
        "[rank0]: RuntimeError: NCCL communicator was aborted on rank 0.",
    ]
    events = sorted(run(lines), key=lambda e: e["log.file.line"])
    assert [(e["ml.rank"], e["log.file.line"], e["error.type"]) for e in events] == [
        (1, 1, "torch.distributed.DistBackendError"), (0, 2, "RuntimeError")]
    assert "[rank" not in events[0]["error.stack_trace"]


def test_rank_prefix_on_single_lines():
    event, = run(["[rank3]: {'loss': 0.5, 'epoch': 1.0}"])
    assert event["ml.rank"] == 3 and event["ml.loss"] == 0.5


def test_multiline_start_joins_lines_that_do_not_match():
    src = source(multiline_start=r"^\d{4}-\d\d-\d\d ")
    lines = [
        "2024-05-01 12:00:00,000 - trainer - ERROR - step failed",
        "Traceback (most recent call last):",
        '  File "train.py", line 3, in <module>',
        "ValueError: shapes (3,) and (4,) not aligned",
        "CUDA kernel errors might be asynchronously reported",
        "2024-05-01 12:00:01,000 - trainer - INFO - next",
        "continued detail",
    ]
    events = run(lines, source=src)
    assert len(events) == 2
    first, second = events
    assert first["log.file.line"] == 1 and first["log.offset"] == 0
    assert first["log.level"] == "error" and first["log.logger"] == "trainer"
    assert first["message"].startswith("step failed\nTraceback (most recent call last):")
    assert first["error.type"] == "ValueError"
    assert first["error.message"] == ("shapes (3,) and (4,) not aligned\n"
                                      "CUDA kernel errors might be asynchronously reported")
    assert first["error.stack_trace"].startswith("Traceback")
    assert second["log.file.line"] == 6
    assert second["message"] == "next\ncontinued detail"
    assert "error.type" not in second


def test_multiline_start_record_of_one_line_parses_like_any_line():
    src = source(multiline_start=r"^\{")
    events = run(['{"loss": 0.5, "msg": "a"}', '{"loss": 0.25, "msg": "b"}'], source=src)
    assert [e["ml.loss"] for e in events] == [0.5, 0.25]


def test_invalid_multiline_start_is_a_clear_error():
    try:
        Parser(source(multiline_start="(unclosed"))
    except ValueError as e:
        assert "multiline_start" in str(e) and "(unclosed" in str(e)
    else:
        raise AssertionError("expected a ValueError")


def test_runaway_traceback_is_released_at_the_line_bound():
    frames = [f'  File "f.py", line {i}, in loop' for i in range(MAX_RECORD_LINES + 100)]
    lines = ["Traceback (most recent call last):", *frames, "RecursionError: too deep"]
    events = run(lines)
    assert events[0]["message"].count("\n") == MAX_RECORD_LINES - 1
    assert "multiline_split" in events[0]["tags"]
    assert events[0]["log.file.line"] == 1
    # nothing lost: every line is in some event, in order
    assert sum(e["message"].count("\n") + 1 for e in events) == len(lines)
    assert events[-1]["message"] == "RecursionError: too deep"


def test_runaway_record_is_released_at_the_size_bound():
    src = source(multiline_start=r"^START")
    big = "x" * (MAX_RECORD_CHARS // 3)
    events = run(["START", big, big, big, big, "START again"], source=src)
    assert all(len(e["message"]) <= MAX_RECORD_CHARS for e in events)
    assert "multiline_split" in events[0]["tags"]
    assert sum(e["message"].count(big) for e in events) == 4
    assert events[-1]["message"] == "START again"


def test_invalid_utf8_inside_a_traceback_tags_the_record():
    lines = [b"Traceback (most recent call last):", b'  File "caf\xe9.py", line 1, in <module>',
             b"UnicodeError: bad"]
    event, = run(lines)
    assert event["tags"] == ["invalid_utf8"]
    assert 'caf\ufffd.py' in event["error.stack_trace"]


def test_too_many_ranks_holding_tracebacks_release_the_oldest_not_lose_it():
    from faultwarden.daemon.parse.parser import MAX_OPEN_RECORDS

    ranks = MAX_OPEN_RECORDS + 6
    lines = [f"[rank{r}]: Traceback (most recent call last):" for r in range(ranks)]
    lines += [f"[rank{r}]: RuntimeError: rank {r} failed" for r in range(ranks)]
    events = run(lines)
    assert sorted(e["ml.rank"] for e in events if e["log.file.line"] <= ranks) == list(range(ranks))
    # the ranks that had to give up their record early still report every line, none dropped
    assert sum(e["message"].count("\n") + 1 for e in events) == len(lines)
    assert events[0]["ml.rank"] == 0  # the oldest went first


def test_json_format_does_not_join_tracebacks():
    lines = ["Traceback (most recent call last):", '  File "a.py", line 1', "ValueError: x"]
    events = run(lines, source=source(format="json"))
    assert len(events) == 3 and all(e["tags"] == ["parse_error"] for e in events)
