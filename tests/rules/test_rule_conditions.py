"""Each condition type of the rule language, on events built by hand."""
from __future__ import annotations

import json
import math

import pytest

from faultwarden.detectors.rules import RuleEngine

from .helpers import T0, ev, rule, run

# --- match ---------------------------------------------------------------------------------


def test_match_message_regex_quotes_the_matching_line_of_a_traceback():
    engine = RuleEngine([rule("match: {message: {regex: 'CUDA out of memory'}}", actions=["notify"])])
    tb = ('Traceback (most recent call last):\n  File "t.py", line 1, in <module>\n'
          "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    (f,) = run(engine, [ev(0, "all fine"), ev(1, tb, labels__run_id="r1")])
    assert f.message == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert f.evidence == (tb,)
    assert f.source.path == "train.log" and f.source.line == 2
    assert f.actions == ("notify",) and f.explanation == {"matched": "CUDA out of memory"}


def test_message_regex_also_searches_the_error_fields_a_parser_split_out():
    engine = RuleEngine([rule("match: {message: {regex: 'device-side assert'}}")])
    event = ev(0, "Traceback (most recent call last):", **{"error.message": "CUDA error: device-side assert triggered"})
    assert len(run(engine, [event])) == 1


@pytest.mark.parametrize("test, value, fires", [
    ("{equals: error}", "error", True),
    ("{equals: error}", "warning", False),
    ("{in: [error, critical]}", "critical", True),
    ("{in: [error, critical]}", "info", False),
    ("{regex: '^err'}", "error", True),
    ("{regex: '^err'}", 5, False),
    ("{exists: true}", "x", True),
    ("{gt: 3}", 4, True),
    ("{gt: 3}", 3, False),
    ("{gte: 3}", 3, True),
    ("{lt: 3}", 2.5, True),
    ("{lte: 3}", 3.5, False),
    ("{gt: 3}", "4", False),  # text is not a number
    ("{gt: 3}", math.nan, False),
    ("{finite: false}", math.inf, True),
    ("{finite: false}", 1.0, False),
    ("{finite: true}", 1.0, True),
    ("{gte: 1, lte: 2}", 1.5, True),
    ("{gte: 1, lte: 2}", 2.5, False),
])
def test_field_tests(test, value, fires):
    engine = RuleEngine([rule(f"match: {{labels.x: {test}}}")])
    assert len(run(engine, [ev(0, labels__x=value)])) == int(fires)


def test_exists_false_holds_on_events_without_the_field():
    engine = RuleEngine([rule("match: {ml.loss: {exists: false}}")])
    assert len(run(engine, [ev(0, "a"), ev(1, "b", ml__loss=1.0)])) == 1


def test_all_any_not_combine():
    engine = RuleEngine([rule("""
match:
  all:
    - any: [{message: {regex: 'boom'}}, {error.type: {equals: BoomError}}]
    - not: {log.level: {equals: debug}}
""")])
    events = [ev(0, "boom"), ev(1, "x", error__type="BoomError"), ev(2, "boom", log__level="debug"), ev(3, "quiet")]
    assert [f.source.line for f in run(engine, events)] == [1, 2]


def test_a_rule_only_meets_events_that_could_match_it():
    r = rule("match: {message: {regex: 'No space left on device'}}")
    engine = RuleEngine([r])
    assert engine._candidates(ev(0, "{'loss': 1.0}", ml__loss=1.0)) == []
    assert [x.rule.id for x in engine._candidates(ev(0, "OSError: No space left on device"))] == ["r"]


# --- not_finite ----------------------------------------------------------------------------

def test_not_finite_names_field_value_and_step():
    engine = RuleEngine([rule("not_finite: {field: [ml.loss, ml.grad_norm]}", fault="nan_inf")])
    found = run(engine, [ev(0, ml__loss=1.0, ml__grad_norm=2.0), ev(1, ml__loss=1.0, ml__grad_norm=math.inf, ml__step=7),
                         ev(2, ml__loss=math.nan)])
    assert [f.message for f in found] == ["ml.grad_norm is inf at step 7", "ml.loss is nan"]
    assert found[0].explanation == {"field": "ml.grad_norm", "value": "inf", "step": 7}
    json.dumps(found[0].explanation, allow_nan=False)  # the explanation is strict JSON


# --- threshold -----------------------------------------------------------------------------

def test_threshold_count_in_a_time_window_with_where():
    engine = RuleEngine([rule("""
threshold: {field: log.level, agg: count, where: {log.level: {equals: error}}, window: 60s, above: 2}
""")])
    events = [ev(0, "e1", log__level="error"), ev(10, "i", log__level="info"), ev(20, "e2", log__level="error"),
              ev(100, "e3", log__level="error"),  # e1 and e2 left the window
              ev(110, "e4", log__level="error"), ev(120, "e5", log__level="error")]
    found = run(engine, events)
    assert len(found) == 1
    f = found[0]
    assert f.message == "count of log.level over 60s is 3 (above 2)"
    assert f.source.line == 101  # the oldest event in the window
    assert f.evidence[-1] == "e5" and "e3" in f.evidence


@pytest.mark.parametrize("agg, expected", [("mean", 5.5), ("sum", 55.0), ("max", 10.0), ("min", 1.0),
                                           ("p95", 10.0), ("p99", 10.0)])
def test_threshold_aggregates_over_the_last_events(agg, expected):
    engine = RuleEngine([rule(f"threshold: {{field: ml.latency_ms, agg: {agg}, window_events: 10, above: -1}}")])
    found = run(engine, [ev(i, ml__latency_ms=float(i + 1)) for i in range(10)])
    assert found[-1].explanation["value"] == expected and found[-1].explanation["events"] == 10


def test_threshold_p99_needs_min_events_and_slides():
    engine = RuleEngine([rule("threshold: {field: ml.latency_ms, agg: p99, window_events: 100, above: 500, min_events: 20}")])
    slow_early = [ev(0, ml__latency_ms=900.0)] + [ev(i, ml__latency_ms=100.0) for i in range(1, 19)]
    assert run(engine, slow_early) == []  # 19 events: not judged yet
    assert len(run(engine, [ev(20, ml__latency_ms=100.0)])) == 1  # the 900 is the p99 of 20


def test_threshold_below():
    engine = RuleEngine([rule("threshold: {field: ml.samples_per_s, agg: mean, window_events: 3, below: 100}")])
    found = run(engine, [ev(i, ml__samples_per_s=v) for i, v in enumerate([300.0, 50.0, 50.0, 10.0])])
    assert [f.explanation["value"] for f in found] == [pytest.approx(36.666667)]


# --- spike ---------------------------------------------------------------------------------

def _losses(values):
    return [ev(i, f"loss {v}", ml__loss=v) for i, v in enumerate(values)]


def test_spike_fires_on_a_jump_with_the_numbers():
    engine = RuleEngine([rule("spike: {field: ml.loss, window_events: 50, z: 6, warmup: 10}", fault="loss_spike")])
    calm = [2.0 + 0.01 * ((i * 7) % 5) for i in range(30)]
    found = run(engine, _losses(calm + [6.0, 2.02]))
    assert len(found) == 1
    x = found[0].explanation
    assert x["value"] == 6.0 and x["median"] == pytest.approx(2.02) and x["z"] > 6 and x["history"] == 30
    assert found[0].evidence == (f"loss {calm[-1]}", "loss 6.0")  # the line before, and the spike


def test_spike_waits_for_warmup_and_respects_direction():
    up = RuleEngine([rule("spike: {field: ml.loss, warmup: 10}")])
    assert run(up, _losses([2.0, 2.01, 9.0])) == []  # before warm-up
    assert run(RuleEngine([rule("spike: {field: ml.loss, warmup: 10}")]), _losses([2.0 + i * 1e-3 for i in range(20)] + [0.1])) == []
    down = RuleEngine([rule("spike: {field: ml.loss, warmup: 10, direction: down}")])
    assert len(run(down, _losses([2.0 + i * 1e-3 for i in range(20)] + [0.1]))) == 1


def test_spike_min_relative_change_and_flat_history():
    noisy = [2.0 + 0.001 * (i % 3) for i in range(30)]
    strict = RuleEngine([rule("spike: {field: ml.loss, warmup: 10, min_relative_change: 0.5}")])
    assert run(strict, _losses(noisy + [2.5])) == []  # far in z, but only 25% up
    flat = RuleEngine([rule("spike: {field: ml.loss, warmup: 10}")])
    assert run(flat, _losses([2.0] * 30 + [2.0001])) == []  # a flat history is not a hair trigger
    assert len(run(RuleEngine([rule("spike: {field: ml.loss, warmup: 10}")]), _losses([2.0] * 30 + [3.0]))) == 1


# --- flatline ------------------------------------------------------------------------------

HANG = "flatline: {field: ml.step, for: 10m}"


def test_a_gap_inside_the_log_is_a_hang():
    engine = RuleEngine([rule(HANG, fault="hang", group_by=["labels.run_id"])])
    events = [ev(0, "s1", ml__step=1, labels__run_id="a"), ev(60, "s2", ml__step=2, labels__run_id="a"),
              ev(60 + 1500, "late", labels__run_id="a")]
    (f,) = run(engine, events)
    assert f.message == "no progress of ml.step for 25m (stuck at 2)"
    assert f.time == T0 + 60 + 600  # when the silence reached 10 minutes
    assert f.source.line == 61 and f.evidence == ("s2",) and f.group == {"labels.run_id": "a"}


def test_the_end_of_the_input_is_not_a_hang_but_a_tick_sees_silence():
    engine = RuleEngine([rule(HANG)])
    assert run(engine, [ev(i * 60, ml__step=i) for i in range(5)]) == []
    assert engine.tick(T0 + 4 * 60 + 599) == []
    (f,) = engine.tick(T0 + 4 * 60 + 600)
    assert f.explanation["last_value"] == 4
    assert engine.tick(T0 + 4 * 60 + 5000) == []  # once per silence


def test_a_stuck_value_is_no_progress_and_progress_rearms():
    engine = RuleEngine([rule(HANG)])
    found = run(engine, [ev(0, ml__step=5), ev(300, ml__step=5), ev(601, ml__step=5),  # fires
                         ev(700, ml__step=6), ev(1400, ml__step=7)])  # fires again after progress
    assert [f.explanation["last_value"] for f in found] == [5, 6]


def test_until_ends_the_watch():
    engine = RuleEngine([rule("flatline: {field: ml.step, for: 10m, until: {message: {regex: 'Training completed'}}}")])
    assert run(engine, [ev(0, ml__step=1), ev(1, "Training completed."), ev(3000, "upload")]) == []
    assert engine.tick(T0 + 9000) == []


def test_groups_go_silent_separately():
    engine = RuleEngine([rule(HANG, group_by=["labels.run_id"])])
    events = []
    for i in range(20):
        events.append(ev(i * 60, ml__step=i, labels__run_id="busy"))
        if i < 2:
            events.append(ev(i * 60, ml__step=i, labels__run_id="stuck"))
    found = run(engine, events)
    assert [f.group for f in found] == [{"labels.run_id": "stuck"}]


# --- change --------------------------------------------------------------------------------

def test_change_down():
    engine = RuleEngine([rule("change: {field: ml.world_size, direction: down}")])
    found = run(engine, [ev(i, f"ws {w}", ml__world_size=w) for i, w in enumerate([8, 8, 16, 7, 7])])
    assert [f.message for f in found] == ["ml.world_size went down from 16 to 7"]
    assert found[0].evidence == ("ws 16", "ws 7")


def test_change_any_on_text():
    engine = RuleEngine([rule("change: {field: labels.git_sha}")])
    assert len(run(engine, [ev(0, labels__git_sha="a1"), ev(1, labels__git_sha="a1"), ev(2, labels__git_sha="b2")])) == 1


# --- outlier -------------------------------------------------------------------------------

def test_outlier_finds_the_slow_rank():
    engine = RuleEngine([rule("outlier: {field: ml.step_time_s, across: ml.rank, z: 4, min_members: 3, window: 1m, direction: up}")])
    events = []
    for step in range(3):
        for rank, base in enumerate([1.00, 1.02, 0.99, 2.5]):
            events.append(ev(step * 2 + rank * 0.1, ml__rank=rank, ml__step_time_s=base + 0.001 * step))
    found = run(engine, events)
    assert found and {f.explanation["member"] for f in found} == {3}
    assert found[0].explanation["members"] == 4


def test_outlier_needs_min_members_within_the_window():
    engine = RuleEngine([rule("outlier: {field: ml.step_time_s, across: ml.rank, min_members: 3, window: 1m}")])
    events = [ev(0, ml__rank=0, ml__step_time_s=1.0), ev(1, ml__rank=1, ml__step_time_s=1.0),
              ev(120, ml__rank=2, ml__step_time_s=9.0)]  # ranks 0 and 1 left the window
    assert run(engine, events) == []


# --- for:, groups, realert, state ------------------------------------------------------------

def test_for_emits_once_when_the_condition_held_long_enough():
    r = rule("threshold: {field: ml.latency_ms, agg: max, window_events: 1, above: 500}", **{"for": "2m"})
    engine = RuleEngine([r])
    slow = [ev(t, f"slow {t}", ml__latency_ms=900.0) for t in (0, 60, 119, 120, 180)]
    found = run(engine, slow)
    assert len(found) == 1
    assert found[0].time == T0 + 120 and found[0].source.line == 1
    assert "holding for 2m" in found[0].message and found[0].explanation["held_s"] == 120
    # it stops holding, then holds again: a new episode, a new finding after 2 more minutes
    again = [ev(200, ml__latency_ms=10.0)] + [ev(t, ml__latency_ms=900.0) for t in (300, 360, 420)]
    assert [f.time for f in run(engine, again)] == [T0 + 420]


def test_every_event_that_holds_is_a_finding_without_for_and_realert_is_passed_on():
    engine = RuleEngine([rule("match: {message: {regex: boom}}", realert="10m", group_by=["host.name"],
                              labels={"team": "ml"})])
    found = run(engine, [ev(0, "boom", host__name="a"), ev(1, "boom", host__name="a"), ev(2, "boom")])
    assert len(found) == 3 and found[0].realert_s == 600
    assert [f.group for f in found] == [{"team": "ml", "host.name": "a"}] * 2 + [{"team": "ml"}]


def test_state_survives_a_restart_as_json():
    rules = [rule("spike: {field: ml.loss, warmup: 10}", id="spike"),
             rule(HANG, id="hang"),
             rule("threshold: {field: ml.latency_ms, agg: p99, window: 5m, above: 500, min_events: 3}", id="slo"),
             rule("outlier: {field: ml.step_time_s, across: ml.rank}", id="slow-rank"),
             rule("change: {field: ml.world_size}", id="ws")]
    first = RuleEngine(rules)
    calm = [ev(i, ml__loss=2.0 + 0.01 * (i % 3), ml__step=i, ml__latency_ms=100.0 + i, ml__world_size=8,
               ml__rank=i % 3, ml__step_time_s=1.0) for i in range(20)]
    assert run(first, calm) == []
    saved = json.loads(json.dumps(first.state(), allow_nan=False))
    second = RuleEngine(rules)
    second.restore(saved)
    assert second.state() == first.state()
    found = run(second, [ev(21, ml__loss=9.0, ml__latency_ms=900.0, ml__world_size=4)])
    assert sorted(f.rule for f in found) == ["slo", "spike", "ws"]  # history came back
    assert [f.rule for f in second.tick(T0 + 19 + 600)] == ["hang"]


def test_state_of_a_changed_rule_is_dropped():
    old = RuleEngine([rule("change: {field: ml.world_size}", id="ws")])
    run(old, [ev(0, ml__world_size=8)])
    new = RuleEngine([rule("change: {field: ml.world_size, direction: down}", id="ws")])
    new.restore(old.state())
    assert new.state()["rules"] == {}


def test_groups_silent_for_a_day_are_forgotten():
    engine = RuleEngine([rule("change: {field: ml.world_size}", group_by=["labels.run_id"]),
                         rule(HANG, id="hang", group_by=["labels.run_id"])])
    run(engine, [ev(0, ml__world_size=8, ml__step=1, labels__run_id="old")])
    run(engine, [ev(3600 * 2 + i, ml__world_size=8, ml__step=i, labels__run_id="new") for i in range(2)])
    assert [len(x.groups) for x in engine.compiled] == [2, 2]  # the old run's hang fired, kept a while
    late = run(engine, [ev(3600 * 26, ml__world_size=4, ml__step=9, labels__run_id="new")])
    assert sorted(f.rule for f in late) == ["hang", "r"]  # the new run: silent a day, and shrank
    assert [list(x.groups) for x in engine.compiled] == [[("new",)], [("new",)]]
