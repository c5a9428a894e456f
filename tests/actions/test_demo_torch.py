"""The one test with a real PyTorch job: `faultwarden demo` end to end, then a deep check of the
checkpoints it left (torch.load in a child process)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

pytestmark = pytest.mark.torch
FAULTWARDEN = [sys.executable, "-m", "faultwarden.daemon.cli"]


def test_demo_catches_nan_restores_and_completes(tmp_path):
    pytest.importorskip("torch")
    demo = subprocess.run([*FAULTWARDEN, "demo", "--dir", str(tmp_path), "--steps", "40",
                           "--save-every", "10", "--nan-at-step", "25"],
                          capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "incident" in out and "nan_inf (nan-loss, critical) at step 25" in out
    assert f"restored checkpoint step 20 ({tmp_path / 'checkpoints' / 'checkpoint-20'})" in out
    assert "job completed (attempt 2, exit status 0)" in out
    assert "training a 16-32-1 MLP with torch" in (next((tmp_path / "state" / "runs").iterdir()) / "events.jsonl").read_text()
    incidents = json.loads((tmp_path / "state" / "incidents.json").read_text())["incidents"]
    nan = next(i for i in incidents if i["rule"] == "nan-loss")
    assert nan["status"] == "resolved"

    # a NaN-filled safetensors file next to the demo's checkpoints: only loading it shows that
    nan_dir = tmp_path / "nan"
    nan_dir.mkdir()
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    (nan_dir / "model-step5.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header + struct.pack("<4f", 1.0, float("nan"), 2.0, 3.0))
    verify = subprocess.run([*FAULTWARDEN, "checkpoints", "verify", "--deep", "--json",
                             str(tmp_path / "checkpoints"), str(nan_dir)],
                            capture_output=True, text=True, timeout=300)
    rows = {r["step"]: r for r in map(json.loads, verify.stdout.splitlines())}
    assert verify.returncode == 1
    assert rows[5]["problems"] == ["model-step5.safetensors: w holds NaN or inf"]
    for step in (10, 20, 30, 40):  # the restarted job's checkpoints load, every tensor finite
        assert rows[step]["healthy"] and rows[step]["deep"]["ok"] and rows[step]["deep"]["tensors"] == 4  # 2 weights, 2 biases
