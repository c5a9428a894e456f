"""SIGHUP reads the anomaly model file again; a file that cannot be loaded leaves the last good
model running. A real daemon, its Prometheus counter read over HTTP to know when it is done."""
from __future__ import annotations

import re
import shutil
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ops"))
from svc_harness import Daemon  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reloads(port: int, result: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf'^faultwarden_model_reloads_total\{{result="{result}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def _wait_reloads(port: int, result: str, count: float, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _reloads(port, result) < count:
        assert time.monotonic() < deadline, f"no {result} model reload counted within {timeout} s"
        time.sleep(0.1)


def test_sighup_reloads_the_model_and_a_broken_file_keeps_the_last_good_one(tmp_path, run_model):
    from faultwarden.detectors.anomaly import save

    good = tmp_path / "runs.fwm"
    save(run_model, good)
    current = tmp_path / "current.fwm"
    shutil.copy(good, current)
    (tmp_path / "logs").mkdir()
    port = _free_port()
    config = tmp_path / "faultwarden.yaml"
    config.write_text(yaml.safe_dump({
        "sources": [{"paths": [str(tmp_path / "logs" / "*.log")]}], "state_dir": str(tmp_path / "state"),
        "detectors": {"anomaly": {"model": str(current)}}, "metrics": {"port": port}}))
    daemon = Daemon(tmp_path, config)
    try:
        daemon.wait_message("READY=1", timeout=120)
        current.write_bytes(b"PK\x03\x04 not a model")  # a half-copied file
        daemon.proc.send_signal(signal.SIGHUP)
        _wait_reloads(port, "error", 1)
        assert _reloads(port, "ok") == 0
        shutil.copy(good, current)
        daemon.proc.send_signal(signal.SIGHUP)
        _wait_reloads(port, "ok", 1)
        assert daemon.proc.poll() is None
    finally:
        code = daemon.stop()
    out = daemon.proc.stdout.read().decode()
    assert code == 0, out
    refused = [line for line in out.splitlines() if "anomaly model not reloaded" in line]
    assert len(refused) == 1 and "the last good model keeps running" in refused[0]
    assert str(current) in refused[0]  # which file, and why
    assert sum("anomaly model reloaded" in line for line in out.splitlines()) == 1
