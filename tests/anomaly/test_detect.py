"""The detector finds what healthy runs never did, and stays quiet on a healthy run."""
from __future__ import annotations

import json

import pytest

from faultwarden.detectors.anomaly import AnomalyDetector
from faultwarden.detectors.finding import Finding

from .logs import CHECKPOINT_EVERY, events, write_run


def findings(model, path) -> list[Finding]:
    return list(AnomalyDetector(model).scan(events(path)))


def test_a_healthy_run_gives_no_finding(run_model, tmp_path):
    assert findings(run_model, write_run(tmp_path / "fresh.log", "fresh", seed=11)) == []
    assert run_model.training["above_threshold"] == 0   # quantile 1.0: no training window above


def test_a_step_time_creep_is_found_and_explained(run_model, tmp_path):
    found = findings(run_model, write_run(tmp_path / "slow.log", "slow", seed=12, creep_from=200))
    assert found
    first = found[0]
    assert first.rule == "anomaly:runs" and first.fault == "anomaly" and first.severity == "warning"
    assert first.group == {"labels.run_id": "slow"}
    # The first window that creeps is the one holding step 200 onwards, not an earlier one.
    events_per_window = 40
    assert first.source.line >= 200 - events_per_window
    assert first.source.path.endswith("slow.log")
    top = first.explanation["features"][0]
    assert top["feature"].startswith("ml.step_time_s."), first.explanation["features"]
    assert "ml.step_time_s" in first.message and "threshold" in first.message


def test_an_unseen_template_is_found_with_its_line_as_evidence(run_model, tmp_path):
    line = "NCCL watchdog thread terminated with exception: collective operation timed out"
    found = findings(run_model, write_run(tmp_path / "nccl.log", "nccl", seed=13, inject={150: line}))
    assert len(found) == 1
    finding = found[0]
    assert line in finding.explanation["unseen_templates"]
    assert line in finding.evidence
    features = {f["feature"]: f for f in finding.explanation["features"]}
    assert features["template.unseen"]["beyond_training_range"]
    assert features["template.unseen"]["training_range"] == [0.0, 0.0]


def test_the_finding_points_at_the_first_line_of_its_window(run_model, tmp_path):
    path = write_run(tmp_path / "nccl.log", "nccl", seed=14, inject={150: "segfault in worker 3"})
    evs = events(path)
    finding = findings(run_model, path)[0]
    window_start = next(e for e in evs if e["log.file.line"] == finding.source.line)
    assert finding.source.offset == window_start["log.offset"]
    assert finding.evidence[0] == window_start["message"]
    # The window holds the injected line: it starts at most 39 events before it.
    injected = next(e for e in evs if e["message"] == "segfault in worker 3")
    assert 0 <= injected["log.file.line"] - finding.source.line < 40


def test_runs_are_windowed_apart(run_model, tmp_path):
    """Interleaved runs: each run's windows hold its own events only."""
    a = events(write_run(tmp_path / "a.log", "a", seed=21))
    b = events(write_run(tmp_path / "b.log", "b", seed=22, inject={100: "CUDA error: an illegal memory access"}))
    merged = sorted(a + b, key=lambda e: e["@timestamp"])
    found = list(AnomalyDetector(run_model).scan(merged))
    assert found and {f.group["labels.run_id"] for f in found} == {"b"}


def test_count_windows_scale_a_short_tail(run_model, tmp_path):
    """A run that ends mid-window: its tail is scored as a rate, so a healthy tail is quiet."""
    steps = 3 * CHECKPOINT_EVERY + 25  # 3 checkpoints: the last window holds ~25 events
    assert findings(run_model, write_run(tmp_path / "short.log", "short", seed=15, steps=steps)) == []


def test_explanations_are_json(run_model, tmp_path):
    found = findings(run_model, write_run(tmp_path / "slow.log", "slow", seed=16, creep_from=100))
    assert found
    for f in found:
        json.loads(json.dumps(f.explanation, allow_nan=False))


def test_tfidf_weights_templates_by_rarity_and_still_finds_the_unseen(healthy_logs, tmp_path):
    from faultwarden.detectors.anomaly import ModelSpec, fit

    training = events(*healthy_logs)
    model = fit(lambda: iter(training), ModelSpec(name="tfidf", group_by=("labels.run_id",), window_events=40,
                                                  quantile=1.0, tfidf=True))
    weights = dict(zip(model.space.names, model.weights))
    templates = {t.text: t.id for t in model.book.templates}
    step = templates["step <NUM> done"]
    assert weights[f"template.{step}"] == pytest.approx(0.0, abs=1e-6)   # in every window: log(N/N)
    checkpoint = next(i for text, i in templates.items() if text.startswith("saved checkpoint"))
    assert weights[f"template.{checkpoint}"] > 0.0     # in some windows only
    assert weights["template.unseen"] == 1.0
    found = findings(model, write_run(tmp_path / "oom.log", "oom", seed=17,
                                      inject={90: "torch.OutOfMemoryError: CUDA out of memory"}))
    assert len(found) == 1 and found[0].explanation["unseen_templates"]
