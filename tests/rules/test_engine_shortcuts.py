"""The engine's shortcuts for speed must never change an answer: the chunked sorted window,
the screen built on rare-character anchors, the substring test before a regex, the inlined
spike test. Each is checked against the plain way of computing the same thing."""
from __future__ import annotations

import math
import random
from collections import deque

import pytest

from faultwarden.detectors.rules import RuleEngine, RuleSet
from faultwarden.detectors.rules import conditions as c
from faultwarden.detectors.rules.match import compile_match
from faultwarden.detectors.rules.model import Match, Spike
from faultwarden.detectors.rules.regex import MIN_ANCHOR, anchor, required_literals, screen

from .helpers import T0


def test_the_chunked_window_answers_as_a_sorted_list():
    rnd = random.Random(3)
    window, plain, live = c.Sorted(), [], deque()
    c.Sorted.LOAD, load = 8, c.Sorted.LOAD  # small chunks: many splits and empty chunks
    try:
        for step in range(6000):
            if live and (rnd.random() < 0.45 or len(live) > 300):
                value = live.popleft()
                window.remove(value)
                plain.remove(value)
            else:
                value = float(rnd.choice([rnd.randint(0, 20), rnd.gauss(0, 100)]))  # many duplicates
                live.append(value)
                window.add(value)
                plain.append(value)
            plain.sort()
            assert len(window) == len(plain)
            if plain:
                k = rnd.randrange(len(plain))
                assert (window[0], window[-1], window[k], window[-1 - k]) == (plain[0], plain[-1], plain[k], plain[-1 - k])
        with pytest.raises(IndexError):
            window[len(plain)]
    finally:
        c.Sorted.LOAD = load


def test_p99_over_a_long_window_is_the_nearest_rank():
    cond = c.ThresholdCond(c.Threshold(field="ml.latency_ms", agg="p99", window=300, above=500, min_events=1))
    w = cond.new()
    values = [float((i * 7919) % 1000) for i in range(20_000)]
    for i, v in enumerate(values):
        cond.observe(w, {"ml.latency_ms": v, "message": ""}, T0 + i * 0.01)  # all inside 300 s
    ordered = sorted(values)
    assert cond.aggregate(w) == ordered[math.ceil(0.99 * len(ordered)) - 1]


PACK = RuleSet.load([])
ENGINE = RuleEngine(PACK)


def test_anchors_are_parts_of_their_literals_that_start_on_rare_characters():
    literals = [lit for _, lit in ENGINE._plain]
    for lit in literals:
        a = anchor(lit)
        assert a in lit and lit.endswith(a) and len(a) >= min(len(lit), MIN_ANCHOR)
    assert anchor(" HTTP/") == "HTTP/" and anchor("invalid argument") == "valid argument"
    first = {anchor(lit)[0] for lit in literals}
    assert " " not in first and not first & set("etaoinsrhld")  # the commonest characters start nothing


def test_the_anchored_screen_misses_no_literal():
    """Wherever a literal of the pack occurs, the screen built from the anchors finds something."""
    literals = [lit for _, lit in ENGINE._plain]
    find = screen(sorted({anchor(lit) for lit in literals})).search
    rnd = random.Random(11)
    filler = "step 1200 loss=2.31 grad_norm=0.87 INFO WARNING the quick brown fox [rank0] {'a': 1} "
    for lit in literals:
        for _ in range(3):
            cut = rnd.randrange(len(filler))
            assert find(filler[:cut] + lit + filler[cut:]) is not None, lit


@pytest.mark.parametrize("entry", PACK.entries, ids=lambda e: e.id)
def test_a_text_regex_with_its_substring_test_agrees_with_the_plain_search(entry):
    """Every example line of the pack, tested by every text regex of the rule, both ways."""
    import re

    def regexes(m):
        if m is None:
            return
        if m.message is not None and m.message.regex:
            yield m.message.regex
        for sub in [*(m.all or []), *(m.any or []), *([m.not_] if m.not_ else [])]:
            yield from regexes(sub)

    conds = [entry.rule.match, getattr(entry.rule.threshold, "where", None), getattr(entry.rule.flatline, "until", None)]
    texts = [line for ex in entry.rule.examples.fire + entry.rule.examples.quiet for line in [ex, *ex.splitlines()]]
    for pattern in (p for m in conds for p in regexes(m)):
        fast = compile_match(Match.model_validate({"message": {"regex": pattern}}))
        plain = re.compile(pattern).search
        for text in texts:
            assert fast({"message": text}) == (plain(text) is not None), (pattern, text)
        if required_literals(pattern) is not None:
            assert fast({"message": "nothing of the kind, 12:00:00 INFO ok"}) is False


@pytest.mark.parametrize("v, expected", [
    (1.5, 1.5), (3, 3.0), (-0.0, 0.0), (math.nan, None), (math.inf, None), (-math.inf, None),
    (True, None), ("1.5", None), (None, None), (10**400, None),
])
def test_number_takes_finite_numbers_only(v, expected):
    assert c.number(v) == expected


@pytest.mark.parametrize("spec", [
    Spike(field="ml.loss", window_events=50, z=6, warmup=20, direction="up", min_relative_change=0.25),
    Spike(field="ml.loss", window_events=30, z=3, warmup=10, direction="down"),
    Spike(field="ml.loss", window_events=15, z=2, warmup=5, direction="both", min_relative_change=0.05),
])
def test_the_inlined_spike_test_agrees_with_the_robust_z_of_the_history(spec):
    rnd = random.Random(5)
    cond = c.SpikeCond(spec)
    h = cond.new()
    history: deque = deque(maxlen=spec.window_events)
    hits = 0
    for i in range(3000):
        value = rnd.gauss(10, 0.3) * (rnd.choice([0.3, 0.6, 1.5, 3.0]) if rnd.random() < 0.03 else 1.0)
        got = cond.observe(h, {"ml.loss": value, "message": f"v {value}"}, T0 + i)
        if len(history) < spec.warmup:
            assert got is None
        else:
            reference = c.judge(value, sorted(history), spec) is not None
            assert isinstance(got, c.Hit) == reference, (i, value)
            hits += reference
        history.append(value)
    assert hits > 10  # the series did spike: the comparison covered both answers


def test_an_int_too_large_for_a_float_breaks_no_rule():
    """A dict line may hold 10**400; no condition may raise on it (the pipeline would stop)."""
    engine = RuleEngine(PACK)
    huge = 10**400
    ev = {"@timestamp": T0, "message": "{'loss': 1e400}", "ml.loss": huge, "ml.grad_norm": huge, "ml.step": huge,
          "ml.samples_per_s": huge, "ml.tokens_per_s": huge, "ml.latency_ms": huge, "ml.loss_scale": huge,
          "ml.world_size": huge, "ml.step_time_s": huge, "ml.rank": 1, "labels.run_id": "r"}
    findings = [f for i in range(30) for f in engine.observe({**ev, "@timestamp": T0 + i})]
    assert {f.rule for f in findings} <= {"latency-slo"}  # huge latencies are over any objective
