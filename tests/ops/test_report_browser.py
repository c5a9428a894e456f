"""The HTML report opens in a real headless Chromium without errors and shows the incident."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from faultwarden.daemon import report
from faultwarden.daemon.diagnose import diagnose
from faultwarden.detectors.rules import RuleSet

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is missing: scripts/install-test-deps.sh installs Debian's chromium")
    return path


def test_html_report_renders_in_chromium_without_errors(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(json.dumps({"@timestamp": f"2026-01-01T00:00:{i:02d}Z", "step": i,
                                       "loss": (2.0 / (i + 1)) if i != 30 else float("nan")}) + "\n"
                           for i in range(40)))
    html = tmp_path / "report.html"
    html.write_text(report.render(diagnose([str(log)], RuleSet.load([])), "html"))
    profile = tmp_path / "profile"
    done = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                           html.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    dom = done.stdout
    assert "nan_inf" in dom and "train.log" in dom
    assert "<svg" in dom and "steps reached 39" in dom  # the loss chart and the run's numbers
    shot = tmp_path / "report.png"
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,1600",
                    f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000  # a page was painted, not a blank
