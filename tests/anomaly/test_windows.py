"""Windows: sessions from a regex, series from fields, closing by count, time, idle and end."""
from __future__ import annotations

import json

import pytest

from faultwarden.detectors.anomaly.spec import ModelSpec, SpecError
from faultwarden.detectors.anomaly.windows import Windower


def ev(t: float, message: str, line: int, **fields) -> dict:
    return {"@timestamp": t, "message": message, "log.level": "info", "log.file.path": "/logs/dfs.log",
            "log.file.line": line, "log.offset": 100 * (line - 1), **fields}


def windower(**spec) -> Windower:
    return Windower(ModelSpec(**spec), classify=lambda message: 0)


def test_a_line_joins_every_session_it_names():
    w = windower(session_regex=r"blk_-?\d+")
    lines = [ev(1, "Receiving block blk_1 src: /10.0.0.1", 1),
             ev(2, "ask 10.0.0.2 to replicate blk_1 to blk_-2", 2),
             ev(3, "Deleting block blk_-2 file /data/blk_-2", 3),   # named twice: counted once
             ev(4, "heartbeat from 10.0.0.3", 4)]                    # names no session
    closed = [c for e in lines for c in w.add(e)] + w.flush()
    sessions = {c.group["session"]: c for c in closed}
    assert set(sessions) == {"blk_1", "blk_-2"}
    assert sessions["blk_1"].events == 2 and sessions["blk_-2"].events == 2
    assert sessions["blk_-2"].source.line == 2       # its first line is the shared one
    assert all(c.closed_by == "end" for c in closed)
    assert w.unkeyed == 1


def test_series_by_fields_close_by_count():
    w = windower(group_by=("labels.run_id", "ml.rank"), window_events=3)
    closed = []
    for i in range(7):
        for rank in (0, 1):
            closed += w.add(ev(i, f"step {i}", 2 * i + rank + 1, **{"labels.run_id": "r", "ml.rank": rank}))
    assert [(c.group["ml.rank"], c.events, c.closed_by) for c in closed] == [
        (0, 3, "count"), (1, 3, "count"), (0, 3, "count"), (1, 3, "count")]
    tail = w.flush()   # one event per rank left: below min_events (3 // 4 → 1): kept
    assert sorted(c.group["ml.rank"] for c in tail) == [0, 1]


def test_time_windows_close_on_a_later_event_and_on_tick():
    w = windower(window_seconds=10.0)
    assert w.add(ev(0, "a", 1)) == [] and w.add(ev(9, "b", 2)) == []
    closed = w.add(ev(10, "c", 3))
    assert [(c.events, c.closed_by) for c in closed] == [(2, "time")]
    assert w.expire(19.9) == []
    assert [(c.events, c.closed_by) for c in w.expire(20.0)] == [(1, "time")]


def test_idle_sessions_close_when_event_time_moves_on():
    w = windower(session_regex=r"blk_\d+", idle_seconds=30.0)
    w.add(ev(0, "open blk_1", 1))
    w.add(ev(5, "open blk_2", 2))
    closed = []
    for i, t in enumerate(range(10, 200, 5)):
        closed += w.add(ev(t, "write blk_2", 3 + i))
    assert [c.group["session"] for c in closed] == ["blk_1"]
    assert closed[0].closed_by == "idle" and closed[0].events == 1


def test_the_oldest_window_is_evicted_past_max_open():
    w = windower(session_regex=r"blk_\d+", max_open=2)
    w.add(ev(0, "blk_1", 1))
    w.add(ev(1, "blk_2", 2))
    w.add(ev(2, "blk_1 again", 3))   # blk_1 fed last: blk_2 is the least recent
    closed = w.add(ev(3, "blk_3", 4))
    assert [(c.group["session"], c.closed_by) for c in closed] == [("blk_2", "evicted")]


def test_running_summaries_match_plain_arithmetic():
    w = windower(group_by=("labels.run_id",), min_events=1)
    values = [0.5, 0.7, 0.6, 0.9, 1.1]
    for i, v in enumerate(values):
        w.add(ev(i, "step", i + 1, **{"labels.run_id": "r", "ml.step_time_s": v, "ml.step": i,
                                      "ml.loss": float("nan") if i == 3 else 1.0}))
    (window,) = w.flush()
    stats = window.numbers["ml.step_time_s"].summary()
    mean = sum(values) / len(values)
    assert stats["mean"] == pytest.approx(mean)
    assert stats["std"] == pytest.approx((sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5)
    assert (stats["min"], stats["max"], stats["last"]) == (0.5, 1.1, 1.1)
    xs = range(len(values))
    slope = sum((x - 2) * (v - mean) for x, v in zip(xs, values)) / sum((x - 2) ** 2 for x in xs)
    assert stats["slope"] == pytest.approx(slope)
    assert "ml.step" not in window.numbers          # a position, not a health number
    assert window.non_finite == 1 and window.numbers["ml.loss"].n == 4


def test_open_windows_survive_state_as_json():
    w = windower(session_regex=r"blk_\d+")
    w.add(ev(0, "open blk_1", 1, **{"ml.latency_ms": 3.0}))
    w.add(ev(1, "oops blk_1", 2, **{"log.level": "error"}))
    again = windower(session_regex=r"blk_\d+")
    again.restore(json.loads(json.dumps(w.state())))
    for x in (w, again):
        x.add(ev(2, "close blk_1", 3, **{"ml.latency_ms": 5.0}))
    (a,), (b,) = w.flush(), again.flush()
    assert a.to_json() == b.to_json()
    assert b.errors == 1 and b.error_examples == ["oops blk_1"]


def test_a_bad_spec_names_the_option():
    with pytest.raises(SpecError, match="session_regex"):
        ModelSpec(session_regex="blk_(")
    with pytest.raises(SpecError, match="quantile"):
        ModelSpec(quantile=1.5)
    with pytest.raises(SpecError, match="window_events"):
        ModelSpec(window_events=0)
