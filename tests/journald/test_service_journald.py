"""Service mode over a journald source: a real daemon reads a real journal file and notifies the
kernel's GPU and OOM-killer faults and the unit's NaN loss."""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from .helpers import NAN_STEP, OOM, XID, kernel, unit_line

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ops"))
from svc_harness import Daemon  # noqa: E402


def test_the_daemon_detects_faults_in_the_journal(journal, tmp_path, webhook):
    journal.append(kernel(XID, priority=4), kernel(OOM), unit_line("trainer.service", NAN_STEP))
    config = tmp_path / "faultwarden.yaml"
    config.write_text(yaml.safe_dump({
        "sources": [{"journald": {"files": [str(journal.path)]}, "run_id": "r7"}],
        "state_dir": str(tmp_path / "state"),
        "notify": {"webhooks": [{"url": webhook.url, "min_severity": "info"}]}}))
    daemon = Daemon(tmp_path, config)
    try:
        daemon.wait_message("READY=1")
        for fault in ("gpu_hardware", "host_oom_killed", "nan_inf"):
            body = webhook.wait_for(lambda b, f=fault: b.get("fault") == f)
            assert body["group"].get("labels.run_id") == "r7"
    finally:
        assert daemon.stop() == 0
    assert list((tmp_path / "state").glob("journald-*.cursor")), "no cursor was stored"
