"""A model fitted once per test session on healthy runs (sklearn's import costs seconds)."""
from __future__ import annotations

import pytest

from .logs import events, write_run

HEALTHY_SEEDS = (1, 2, 3, 4, 5, 6)


@pytest.fixture(scope="session")
def healthy_logs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("healthy")
    return [write_run(folder / f"run{seed}.log", f"run{seed}", seed) for seed in HEALTHY_SEEDS]


@pytest.fixture(scope="session")
def run_model(healthy_logs):
    """Windows of 40 events per run (labels.run_id); threshold at the highest training score."""
    from faultwarden.detectors.anomaly import ModelSpec, fit

    training = events(*healthy_logs)
    spec = ModelSpec(name="runs", group_by=("labels.run_id",), window_events=40, quantile=1.0)
    return fit(lambda: iter(training), spec)
