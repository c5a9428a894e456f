"""The anomaly detector on logs of REAL tiny PyTorch runs (torchjob.py), written by
`faultwarden.model.logging` and read back by the daemon's parser: fitted on healthy runs of
other seeds, it flags a run that slows down and a run whose log mix changes within a few
windows of the change, and stays quiet on a healthy run it never saw.

The runs are generated once for the module (a few seconds). Step times come from the job's
simulated device clock (torchjob.py says why the machine's clocks cannot be used on a shared
test VM); everything else is the real run's, so each test run sees the same logs and no
assertion depends on how fast this machine was.
"""
from __future__ import annotations

import pytest

from faultwarden.detectors.anomaly import AnomalyDetector, ModelSpec, fit

from .logs import events
from .torchjob import STEPS, train

pytestmark = pytest.mark.torch

TRAINING_SEEDS = (1, 2, 3, 4, 5)
WINDOW = 20            # events per window: a window holds about 20 steps
FAULT_AT = 150         # the step from which the faulty runs misbehave


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("torch-runs")
    # torch's first steps in a process allocate what later runs reuse: after this warm-up every
    # run's memory (process RSS) is the same, as for runs of one job on one kind of machine.
    train(folder / "warm-up.log", "warm-up", 0, steps=50)
    made = {f"healthy{seed}": train(folder / f"healthy{seed}.log", f"healthy{seed}", seed) for seed in TRAINING_SEEDS}
    made["held-out"] = train(folder / "held-out.log", "held-out", 7)
    made["slow"] = train(folder / "slow.log", "slow", 8, slow_from=FAULT_AT)
    made["chatty"] = train(folder / "chatty.log", "chatty", 9, chatty_from=FAULT_AT)
    return made


@pytest.fixture(scope="module")
def model(runs):
    training = events(*(runs[f"healthy{seed}"] for seed in TRAINING_SEEDS))
    # Threshold at the highest training score: with ~75 training windows a 0.995 quantile would
    # sit between the two highest, and let about one healthy window in 40 through (docs/anomaly.md).
    spec = ModelSpec(name="tiny-train", group_by=("labels.run_id",), window_events=WINDOW, quantile=1.0)
    return fit(lambda: iter(training), spec)


def findings_with_steps(model, path):
    """Findings of a run, each with the ml.step of its window's first line."""
    evs = events(path)
    step_at = {}
    last = 0
    for e in evs:   # a warning line has no step of its own: it belongs to the step before it
        last = e.get("ml.step", last)
        step_at[e["log.file.line"]] = last
    return [(f, step_at[f.source.line]) for f in AnomalyDetector(model).scan(evs)]


def test_the_runs_log_what_the_detector_reads(runs, model):
    evs = events(runs["held-out"])
    steps = [e for e in evs if e.get("event.action") == "train-step"]
    assert [e["ml.step"] for e in steps] == list(range(1, STEPS + 1))
    for e in steps:
        assert e["labels.run_id"] == "held-out" and "tags" not in e
        assert isinstance(e["ml.loss"], float) and isinstance(e["ml.grad_norm"], float)
        assert e["ml.step_time_s"] > 0 and e["ml.samples_per_s"] > 0 and e["ml.memory.rss_bytes"] > 0
    names = set(model.space.names)
    for field in ("ml.step_time_s", "ml.samples_per_s", "ml.loss", "ml.grad_norm", "ml.memory.rss_bytes"):
        assert f"{field}.min" in names and f"{field}.mean" in names
    assert not any(n.startswith(("ml.step.", "ml.rank.", "ml.local_rank.")) for n in names)  # positions
    assert model.training["windows"] >= 3 * (STEPS // WINDOW)


def test_a_healthy_run_it_never_saw_raises_nothing(runs, model):
    assert findings_with_steps(model, runs["held-out"]) == []


def test_a_slowdown_is_flagged_within_a_few_windows(runs, model):
    found = findings_with_steps(model, runs["slow"])
    assert found
    # Nothing before the slowdown: every flagged window reaches past step FAULT_AT ...
    assert all(first_step + WINDOW > FAULT_AT for _, first_step in found), [s for _, s in found]
    # ... and the first flagged window is at most the second one after it.
    assert found[0][1] <= FAULT_AT + 2 * WINDOW
    # From there on, every window is slow: each is flagged.
    windows_after = (STEPS - found[0][1]) // WINDOW
    assert len(found) >= windows_after
    for finding, _ in found:
        top = finding.explanation["features"][0]
        assert top["feature"].startswith(("ml.step_time_s.", "ml.samples_per_s.")), top
        assert finding.group == {"labels.run_id": "slow"}
    # Once a whole window is slow, even its fastest step is beyond what healthy windows showed.
    whole = [f for f, first_step in found if first_step >= FAULT_AT]
    assert whole and all(f.explanation["features"][0]["feature"] in ("ml.step_time_s.min", "ml.samples_per_s.max")
                         and f.explanation["features"][0]["beyond_training_range"] for f in whole)
    assert "beyond the training range" in whole[0].message


def test_a_changed_log_mix_is_flagged_within_a_few_windows(runs, model):
    found = findings_with_steps(model, runs["chatty"])
    assert found
    assert all(first_step + WINDOW > FAULT_AT for _, first_step in found), [s for _, s in found]
    assert found[0][1] <= FAULT_AT + 2 * WINDOW
    for finding, _ in found:
        features = {f["feature"]: f for f in finding.explanation["features"]}
        # The warning template was seen in training (every 50 steps): it is its rate that changed.
        assert finding.explanation["unseen_templates"] == []
        assert features["level.warning"]["beyond_training_range"], features
        assert features["level.warning"]["value"] > features["level.warning"]["training_range"][1]
