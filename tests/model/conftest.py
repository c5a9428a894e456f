"""Fixtures for the instrumentation tests: a clean faultwarden logger per test and a reader of the
JSON lines it wrote (flattened to the dotted names the daemon's parser produces)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ENV_NAMES = ("FAULTWARDEN_LOG_PATH", "FAULTWARDEN_RUN_ID", "RANK", "LOCAL_RANK", "WORLD_SIZE")


def flatten(record: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _read_events(path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [flatten(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def read_events():
    """``read_events(path)``: every line of the file as a flat event (json.loads reads NaN)."""
    return _read_events


@pytest.fixture
def fw(monkeypatch):
    """faultwarden.model.logging with no configuration, no hooks and none of the job variables."""
    from faultwarden.model import inference
    from faultwarden.model import logging as fwlog

    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    fwlog.reset()
    inference.configure_sampling()   # a fresh token bucket: no test inherits another's calls
    yield fwlog
    fwlog.reset()


@pytest.fixture
def run_python(tmp_path):
    """Run a Python snippet in a real child process (the venv's interpreter); returns the result."""

    def run(code: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        script = tmp_path / "job.py"
        script.write_text(code)
        child_env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
        child_env.update(env or {})
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              env=child_env, timeout=timeout, cwd=tmp_path)

    return run
