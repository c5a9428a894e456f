"""Session models (ids found by a regex): idle sessions closed by tick, detector state."""
from __future__ import annotations

import json
import random

import pytest

from faultwarden.detectors.anomaly import AnomalyDetector

from .logs import events
from .sessions import T0, failed_session, healthy_session, write_log

BLOCK = r"blk_-?\d+"


@pytest.fixture(scope="module")
def session_model(tmp_path_factory):
    from faultwarden.detectors.anomaly import ModelSpec, fit

    rng = random.Random(7)
    log = write_log(tmp_path_factory.mktemp("dfs") / "healthy.log",
                    [healthy_session(f"blk_{rng.randint(1, 10**18)}", rng) for _ in range(60)])
    training = events(log)
    return fit(lambda: iter(training), ModelSpec(name="dfs", session_regex=BLOCK, idle_seconds=60.0))


def session_events(tmp_path, name: str, session) -> list[dict]:
    return events(write_log(tmp_path / f"{name}.log", [session], start=T0 + 10_000))


def test_an_idle_session_is_closed_by_tick(session_model, tmp_path):
    detector = AnomalyDetector(session_model)
    failed = session_events(tmp_path, "failed", failed_session("blk_-42", random.Random(1)))
    assert [f for e in failed for f in detector.observe(e)] == []   # the session is still open
    last = failed[-1]["@timestamp"]
    assert detector.tick(last + 30) == []
    found = detector.tick(last + 61)
    assert len(found) == 1
    finding = found[0]
    assert finding.group == {"session": "blk_-42"} and finding.rule == "anomaly:dfs"
    assert finding.source.line == 1 and finding.explanation["window"]["closed_by"] == "idle"
    assert detector.windower.open == {}


def test_a_healthy_session_closes_quietly(session_model, tmp_path):
    detector = AnomalyDetector(session_model)
    healthy = session_events(tmp_path, "healthy", healthy_session("blk_77", random.Random(2)))
    assert [f for e in healthy for f in detector.observe(e)] == []
    assert detector.tick(healthy[-1]["@timestamp"] + 61) == []
    assert detector.windows_scored == 1 and detector.windower.open == {}


def test_detector_state_round_trips_through_json(session_model, run_model, tmp_path):
    failed = session_events(tmp_path, "failed", failed_session("blk_5", random.Random(3)))
    first, rest = failed[:3], failed[3:]
    before = AnomalyDetector(session_model)
    for e in first:
        before.observe(e)
    state = json.loads(json.dumps(before.state(), allow_nan=False))
    after = AnomalyDetector(session_model)
    after.restore(state)
    end = failed[-1]["@timestamp"] + 61
    outcomes = []
    for detector in (before, after):
        for e in rest:
            detector.observe(e)
        outcomes.append([(f.message, f.source, f.group) for f in detector.tick(end)])
    assert outcomes[0] and outcomes[0] == outcomes[1]
    assert outcomes[1][0][1].line == 1      # the window still starts at the session's first line
    # Another model's detector does not take windows it cannot score.
    other = AnomalyDetector(run_model)
    other.restore(state)
    assert other.windower.open == {}
