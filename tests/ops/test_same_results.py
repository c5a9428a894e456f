"""`diagnose` on a log names the same incidents as the live daemon that tailed it (design brief:
same engine, same results)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import yaml

from svc_harness import Daemon

LOG = "".join(
    json.dumps({"@timestamp": f"2026-01-01T00:00:{i:02d}Z", "log.level": "info", "message": "step",
                "ml": {"step": i, "loss": 2.0 / (i + 1)}}) + "\n" for i in range(20)
) + "".join([
    json.dumps({"@timestamp": "2026-01-01T00:00:21Z", "log.level": "info", "message": "step",
                "ml": {"step": 21, "loss": float("nan")}}).replace("NaN", "NaN") + "\n",
    "2026-01-01 00:00:22,000 - trainer - ERROR - Traceback follows\n",
    "Traceback (most recent call last):\n",
    '  File "train.py", line 10, in <module>\n',
    "    loss.backward()\n",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\n",
    json.dumps({"@timestamp": "2026-01-01T00:00:23Z", "log.level": "info", "message": "after"}) + "\n",
])


def test_diagnose_and_the_daemon_open_the_same_incidents(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    config = tmp_path / "faultwarden.yaml"
    config.write_text(yaml.safe_dump({"sources": [{"paths": [str(logs / "*.log")]}],
                                      "state_dir": str(tmp_path / "state")}))
    daemon = Daemon(tmp_path, config)
    try:
        daemon.wait_message("READY=1")
        (logs / "train.log").write_text(LOG)
        book = tmp_path / "state" / "incidents.json"
        deadline = time.monotonic() + 60
        live = []
        while time.monotonic() < deadline and len(live) < 2:
            time.sleep(0.5)
            daemon.proc.send_signal(0)
            if book.exists():
                live = json.loads(book.read_text())["incidents"]
            if len(live) < 2 and daemon.proc.poll() is None:
                continue
    finally:
        assert daemon.stop() == 0
    live = {(i["id"], i["fault"]) for i in json.loads(book.read_text())["incidents"]}
    done = subprocess.run([sys.executable, "-m", "faultwarden.daemon.cli", "diagnose", "--format", "json",
                           str(logs / "train.log")], capture_output=True, text=True)
    offline = {(i["id"], i["fault"]) for i in json.loads(done.stdout)["incidents"]}
    assert {"nan_inf", "cuda_oom"} <= {fault for _, fault in offline}
    assert live == offline
