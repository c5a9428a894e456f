"""`faultwarden anomaly fit|score` as a user runs them, on real files: in-process through click
(importing sklearn and skops costs seconds per process), and once as a real process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from .logs import write_run

TIMEOUT = 120


def cli(*args, cwd: Path):
    """The command in this process; cwd holds no faultwarden.yaml, so the defaults apply."""
    from faultwarden.daemon.cli import cli as group

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(group, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def fitted(healthy_logs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    model = folder / "runs.fwm"
    done = cli("anomaly", "fit", "--output", model, "--group-by", "labels.run_id", "--window-events", 40,
               "--quantile", 1.0, *healthy_logs, cwd=folder)
    assert done.exit_code == 0, done.output
    return folder, model, done.stdout


def test_fit_writes_one_model_file_and_says_what_it_learnt(fitted):
    folder, model, out = fitted
    assert zipfile.is_zipfile(model)
    assert "fitted model 'runs'" in out and "66 windows" in out and f"saved to {model}" in out
    assert "threshold" in out and "0 training window(s) above it" in out


def test_score_json_lists_the_anomalous_windows(fitted):
    """A real `faultwarden` process, as a user runs it."""
    folder, model, _ = fitted
    slow = write_run(folder / "slow.log", "slow", seed=41, creep_from=200)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTWARDEN_")}
    argv = [sys.executable, "-m", "faultwarden.daemon.cli", "anomaly", "score", "--model", str(model),
            "--format", "json", str(slow)]
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model"]["rule"] == "anomaly:runs" and report["windows"] > 0
    anomalies = report["anomalies"]
    assert anomalies and all(a["rule"] == "anomaly:runs" and a["fault"] == "anomaly" for a in anomalies)
    assert anomalies[0]["source"]["path"].endswith("slow.log") and anomalies[0]["source"]["line"] >= 160
    assert anomalies[0]["explanation"]["features"][0]["feature"].startswith("ml.step_time_s.")


def test_score_text_shows_where_and_why(fitted):
    folder, model, _ = fitted
    nccl = write_run(folder / "nccl.log", "nccl", seed=42, inject={120: "NCCL WARN Connection closed by peer"})
    healthy = write_run(folder / "fresh.log", "fresh", seed=43)
    done = cli("anomaly", "score", "--model", model, nccl, healthy, cwd=folder)
    assert done.exit_code == 0, done.output
    assert "1 anomalous" in done.stdout
    assert f"{nccl}:" in done.stdout and "labels.run_id=nccl" in done.stdout
    assert "never seen in training" in done.stdout and "| NCCL WARN Connection closed by peer" in done.stdout
    assert "fresh.log:" not in done.stdout


def test_score_refuses_a_model_of_another_version(fitted):
    folder, model, _ = fitted
    future = folder / "future.fwm"
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(future, "w") as out:
        for name in src.namelist():
            data = src.read(name)
            if name == "faultwarden.json":
                data = json.dumps({**json.loads(data), "version": 2}).encode()
            out.writestr(name, data)
    done = cli("anomaly", "score", "--model", future, model, cwd=folder)
    assert done.exit_code == 2
    assert str(future) in done.stderr and "version 2" in done.stderr


def test_fit_usage_errors_exit_2(fitted, tmp_path):
    folder, model, _ = fitted
    done = cli("anomaly", "fit", "-o", tmp_path / "m.fwm", "--quantile", 0.99, "--contamination", 0.01,
               folder, cwd=tmp_path)
    assert done.exit_code == 2 and "not both" in done.stderr
    done = cli("anomaly", "fit", "-o", tmp_path / "m.fwm", "--session-regex", "blk_(", folder, cwd=tmp_path)
    assert done.exit_code == 2 and "--session-regex" in done.stderr
    short = write_run(tmp_path / "short.log", "short", seed=44, steps=30)
    done = cli("anomaly", "fit", "-o", tmp_path / "m.fwm", short, cwd=tmp_path)
    assert done.exit_code == 2 and "at least 8 are needed" in done.stderr
    assert not (tmp_path / "m.fwm").exists()


def test_contamination_sets_the_quantile(healthy_logs, tmp_path):
    done = cli("anomaly", "fit", "-o", tmp_path / "c.fwm", "--group-by", "labels.run_id", "--window-events", 40,
               "--contamination", 0.05, *healthy_logs, cwd=tmp_path)
    assert done.exit_code == 0, done.output
    assert "the 0.95 quantile of training window scores" in done.stdout
    assert "model 'c'" in done.stdout


def test_range_floor_is_stored_in_the_model(healthy_logs, tmp_path):
    from faultwarden.detectors.anomaly import load

    done = cli("anomaly", "fit", "-o", tmp_path / "f.fwm", "--group-by", "labels.run_id", "--window-events", 40,
               "--range-floor", 0, *healthy_logs, cwd=tmp_path)
    assert done.exit_code == 0, done.output
    assert load(tmp_path / "f.fwm").spec.range_floor == 0.0
    done = cli("anomaly", "fit", "-o", tmp_path / "g.fwm", "--range-floor", -1, *healthy_logs, cwd=tmp_path)
    assert done.exit_code == 2 and "--range-floor" in done.stderr
