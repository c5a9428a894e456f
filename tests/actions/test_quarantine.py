"""Restore sets newer checkpoints aside (never deletes them) and `--undo` puts them back; the
`faultwarden checkpoints` commands on real folders."""
from __future__ import annotations

import json

from click.testing import CliRunner
from test_checkpoint_store import hf_folder, sidecar, torch_zip

from faultwarden.daemon.actions import quarantine
from faultwarden.daemon.actions.checkpoints import CheckpointStore
from faultwarden.daemon.actions.restore import roll_back
from faultwarden.daemon.cli import cli


def names(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_roll_back_quarantines_newer_checkpoints_and_undo_puts_them_back(tmp_path):
    for step in (10, 20, 30):
        hf_folder(tmp_path, step)
    torch_zip(tmp_path / "step-40.pt")
    sidecar(tmp_path / "step-40.pt")
    store = CheckpointStore.of([tmp_path])

    done = roll_back(store, before_step=25, reason="incident abc: nan_inf", batch_id="abc")
    assert done.checkpoint.step == 20
    assert names(tmp_path) == ["checkpoint-10", "checkpoint-20"]
    kept = tmp_path / ".faultwarden-quarantine" / "abc"
    assert sorted(p.name for p in kept.iterdir()) == ["checkpoint-30", "step-40.pt", "step-40.pt.sha256"]
    assert done.details()["quarantined"] == [str(tmp_path / n) for n in ("checkpoint-30", "step-40.pt", "step-40.pt.sha256")]
    assert [c.step for c in store.find()] == [10, 20]

    undone = quarantine.undo([tmp_path])
    assert undone.batch.id == "abc" and undone.kept == []
    assert names(tmp_path) == ["checkpoint-10", "checkpoint-20", "checkpoint-30", "step-40.pt", "step-40.pt.sha256"]
    assert quarantine.undo([tmp_path]) is None  # nothing left to undo


def test_undo_never_overwrites_a_checkpoint_saved_since(tmp_path):
    for step in (10, 20):
        hf_folder(tmp_path, step)
    roll_back(CheckpointStore.of([tmp_path]), before_step=15, reason="test", batch_id="b1")
    hf_folder(tmp_path, 20, {20: 0.1})  # the resumed job saved step 20 again
    undone = quarantine.undo([tmp_path])
    assert undone.restored == []
    assert "exists again" in undone.kept[0]
    assert json.loads((tmp_path / "checkpoint-20" / "trainer_state.json").read_text())["log_history"][0]["loss"] == 0.1
    assert (tmp_path / ".faultwarden-quarantine" / "b1" / "checkpoint-20").is_dir()


def test_checkpoints_commands(tmp_path):
    for step in (10, 20):
        hf_folder(tmp_path, step)
    hf_folder(tmp_path, 30, {25: float("nan"), 30: float("nan")})
    run = CliRunner().invoke

    listed = run(cli, ["checkpoints", "list", str(tmp_path)])
    assert listed.exit_code == 0
    assert [line.split()[0] for line in listed.output.splitlines()[1:]] == ["10", "20", "30"]

    verified = run(cli, ["checkpoints", "verify", "--json", str(tmp_path)])
    assert verified.exit_code == 1
    rows = [json.loads(line) for line in verified.output.splitlines()]
    assert [(r["step"], r["healthy"]) for r in rows] == [(10, True), (20, True), (30, False)]
    assert rows[2]["problems"] == ["loss nan at step 30 (at or before step 30)"]

    dry = run(cli, ["checkpoints", "restore", "--dry-run", str(tmp_path)])
    assert dry.exit_code == 0 and "would resume from step 20" in dry.output
    assert "would move aside " + str(tmp_path / "checkpoint-30") in dry.output
    assert names(tmp_path) == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]

    restored = run(cli, ["checkpoints", "restore", str(tmp_path)])
    assert restored.exit_code == 0, restored.output
    assert "passed over step 30: loss nan" in restored.output
    assert "job arguments: --resume_from_checkpoint " + str(tmp_path / "checkpoint-20") in restored.output
    assert names(tmp_path) == ["checkpoint-10", "checkpoint-20"]
    assert "1 file(s) in quarantine" in run(cli, ["checkpoints", "list", str(tmp_path)]).output

    undone = run(cli, ["checkpoints", "restore", "--undo", str(tmp_path)])
    assert undone.exit_code == 0 and f"put back {tmp_path / 'checkpoint-30'}" in undone.output
    assert names(tmp_path) == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]


def test_checkpoints_without_a_folder_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["checkpoints", "list"])
    assert result.exit_code == 2
    assert "no checkpoint folders" in result.output
