"""Service mode for real: a `faultwarden run` process over a log glob, under a NOTIFY_SOCKET the
test binds, notifying a real local webhook, reloading on SIGHUP and stopping cleanly on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml
from svc_harness import Daemon

LINES_OK = "".join(json.dumps({"step": i, "loss": 1.0 / (i + 1)}) + "\n" for i in range(5))


def write_config(tmp_path, **extra):
    logs = tmp_path / "logs"
    logs.mkdir()
    config = {"sources": [{"paths": [str(logs / "**/*.log")], "run_id": "r1", "service": "trainer"}],
              "state_dir": str(tmp_path / "state"), **extra}
    path = tmp_path / "faultwarden.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, logs


def test_ready_detect_notify_reload_and_stop(tmp_path, webhook):
    config, logs = write_config(tmp_path, notify={"webhooks": [{"url": webhook.url, "min_severity": "info"}]},
                                detectors={"rules": [str(tmp_path / "rules")]})
    (tmp_path / "rules").mkdir()
    daemon = Daemon(tmp_path, config)
    try:
        assert "open incidents" in daemon.wait_message("READY=1")
        daemon.wait_message("WATCHDOG=1")
        (logs / "run1").mkdir()
        with open(logs / "run1" / "train.log", "a") as fh:
            fh.write(LINES_OK)
            fh.write('{"step": 5, "loss": NaN}\n')
        body = webhook.wait_for(lambda b: b.get("fault") == "nan_inf")
        assert body["group"].get("labels.run_id") == "r1"
        assert body["source"]["path"].endswith("train.log") and body["source"]["line"] == 6
        # A broken rule file keeps the last good rules running; SIGHUP does not stop the daemon.
        (tmp_path / "rules" / "bad.yaml").write_text("rules:\n  - id: x\n    fault: not_a_fault\n")
        daemon.proc.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert daemon.proc.poll() is None
    finally:
        code = daemon.stop()
    assert code == 0
    assert "STOPPING=1" in daemon.messages
    out = daemon.proc.stdout.read().decode()
    assert "rule files not reloaded" in out and "bad.yaml:3" in out
    book = json.loads((tmp_path / "state" / "incidents.json").read_text())
    assert [i["fault"] for i in book["incidents"]] == ["nan_inf"]


@pytest.mark.es
def test_events_reach_elasticsearch_and_a_restart_doubles_nothing(tmp_path, es, es_url):
    prefix = f"fwtest-svc-{os.getpid()}"
    config, logs = write_config(tmp_path, elasticsearch={"hosts": [es_url], "index_prefix": prefix})
    (logs / "a.log").write_text(LINES_OK)
    for _ in range(2):  # the second run re-reads nothing that was shipped
        daemon = Daemon(tmp_path, config)
        daemon.wait_message("READY=1")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            es.indices.refresh(index=f"{prefix}-events*", ignore_unavailable=True, allow_no_indices=True)
            count = es.count(index=f"{prefix}-events*", ignore_unavailable=True, allow_no_indices=True)["count"]
            if count >= 5:
                break
            time.sleep(0.5)
        assert daemon.stop() == 0
        (tmp_path / "notify.sock").unlink()
    es.indices.refresh(index=f"{prefix}-events*")
    assert es.count(index=f"{prefix}-events*")["count"] == 5
    es.indices.delete(index=f"{prefix}-*")
