"""Fixtures for the actions tests: real child processes, a real HTTP receiver for webhooks, a
real SMTP server (aiosmtpd), and configs whose rule folder holds only the rules a test needs."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from faultwarden.daemon.config import Config

WAIT_S = 60.0


def wait_for(predicate, timeout: float = WAIT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# Rules in the user's words, as a rule folder would hold them; a test picks the ones it needs.
RULES = {
    "loss-not-finite": """
  - id: loss-not-finite
    fault: nan_inf
    severity: critical
    advice: Roll back to the last healthy checkpoint and lower the learning rate.
    not_finite: {field: ml.loss}
    group_by: [labels.run_id]
    actions: [restore, notify]""",
    "loss-diverged": """
  - id: loss-diverged
    fault: loss_spike
    severity: error
    match: {message: {regex: 'loss diverged'}}
    group_by: [labels.run_id]
    actions: [restore, notify]""",
    "diverged-is-nan": """
  - id: diverged-is-nan
    fault: nan_inf
    severity: error
    match: {message: {regex: 'loss diverged'}}
    group_by: [labels.run_id]
    actions: [notify]""",
    "worker-crashed": """
  - id: worker-crashed
    fault: distributed_worker_failure
    severity: error
    match: {message: {regex: 'WORKER CRASHED'}}
    group_by: [labels.run_id]
    actions: [restart]""",
    "hung": """
  - id: hung
    fault: hang
    severity: error
    match: {message: {regex: 'WEDGED'}}
    group_by: [labels.run_id]
    actions: [restart, notify]""",
    "just-tell": """
  - id: just-tell
    fault: data_error
    severity: warning
    match: {message: {regex: 'bad sample'}}
    group_by: [labels.run_id]
    actions: [notify]""",
}


@pytest.fixture
def make_config(tmp_path: Path):
    """A config for a supervised run: only the named test rules, no back-off, overrides."""

    def make(rules=("loss-not-finite", "loss-diverged", "worker-crashed", "hung", "just-tell"), restart: dict | None = None, restore: dict | None = None,
             notify: dict | None = None) -> Config:
        folder = tmp_path / "rules"
        folder.mkdir(exist_ok=True)
        (folder / "test.yaml").write_text("rules:" + "".join(RULES[r] for r in rules) + "\n")
        return Config.model_validate({
            "state_dir": str(tmp_path / "state"),
            "detectors": {"rules": [str(folder)], "default_rules": False},
            "actions": {"restart": {"backoff_initial_s": 0, "backoff_max_s": 0, "grace_period_s": 10,
                                    **(restart or {})},
                        "restore": {"checkpoint_dirs": [str(tmp_path / "ckpt")], **(restore or {})}},
            "notify": notify or {},
        })

    return make


@pytest.fixture
def smtp_server():
    """aiosmtpd on a port the kernel picked (a socket bound first, so no port guessing)."""
    import socket

    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    class Keep(Sink):
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    class OnSocket(Controller):
        def _create_server(self):
            return self.loop.create_server(self._factory_invoker, sock=sock)

    handler = Keep()
    controller = OnSocket(handler, hostname="127.0.0.1", port=port)
    controller.start()
    handler.port = port
    yield handler
    controller.stop()


def incidents(state_dir: Path) -> list[dict]:
    return json.loads((state_dir / "incidents.json").read_text())["incidents"]


def job_log(tmp_path: Path) -> str:
    """The run's job.log (the one run in the test's state dir)."""
    run_dir = next((tmp_path / "state" / "runs").iterdir())
    return (run_dir / "job.log").read_text()


def quarantined(ckpt: Path) -> list[str]:
    return sorted(p.name for p in (ckpt / ".faultwarden-quarantine").glob("*/checkpoint-*"))


FAULTWARDEN = [sys.executable, "-m", "faultwarden.daemon.cli"]


@pytest.fixture
def cli(tmp_path: Path):
    """`faultwarden run --config F -- CMD...` as a real process in tmp_path: the default rule
    pack, plus a rule folder with `rules` (YAML text) when given, no back-off; `on_start(proc)`
    runs while it runs; returns the finished process."""

    def run(cmd: list[str], rules: str | None = None, restart: dict | None = None,
            restore: dict | None = None, notify: dict | None = None, timeout: float = 120.0,
            on_start=None) -> subprocess.CompletedProcess:
        folders = []
        if rules:
            (tmp_path / "my-rules").mkdir(exist_ok=True)
            (tmp_path / "my-rules" / "rules.yaml").write_text(rules)
            folders.append(str(tmp_path / "my-rules"))
        config = {"state_dir": str(tmp_path / "state"), "detectors": {"rules": folders},
                  "actions": {"restart": {"backoff_initial_s": 0, "backoff_max_s": 0, **(restart or {})},
                              "restore": {"checkpoint_dirs": [str(tmp_path / "ckpt")], **(restore or {})}},
                  "notify": notify or {}}
        path = tmp_path / "faultwarden.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = subprocess.Popen([*FAULTWARDEN, "run", "--config", str(path), "--", *cmd], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            if on_start is not None:
                on_start(proc)
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    return run
