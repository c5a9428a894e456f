"""`run_supervised` end to end: a real child job, the real parser and rule engine, a real
webhook receiver."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from actions_jobs import CRASH, GRACEFUL, HOLD_LOCK, RUNNER, TRAIN
from conftest import incidents, job_log, quarantined, wait_for

from faultwarden.daemon.supervised import run_supervised


def recorder():
    story: list[tuple[str, dict]] = []
    return story, lambda what, details: story.append((what, details))


def test_nan_stops_job_restores_checkpoint_before_it_and_restarts(tmp_path, make_config, webhook):
    config = make_config(rules=["loss-not-finite"],
                         notify={"webhooks": [{"url": webhook.url, "min_severity": "warning"}]})
    ckpt = tmp_path / "ckpt"
    story, observer = recorder()
    # checkpoints every 5 steps; at step 25 the checkpoint is written, then the loss is NaN
    cmd = [sys.executable, "-c", TRAIN, str(ckpt), "40", "5", "--nan-at", "25"]
    rc = run_supervised(config, cmd, dry_run=False, observer=observer)

    assert rc == 0
    steps = [what for what, _ in story]
    assert steps[:3] == ["started", "incident", "stopped"]
    assert steps.index("restored") < steps.index("restarted") < steps.index("exited")
    log = job_log(tmp_path)
    assert f"resumed from {ckpt / 'checkpoint-20'}" in log
    assert f"env resume={ckpt / 'checkpoint-20'}" in log
    assert log.rstrip().endswith('"training complete"}')
    assert quarantined(ckpt) == ["checkpoint-25"]  # the NaN-time one, set aside, not deleted
    assert (ckpt / "checkpoint-40" / "model.pt").exists()  # the restarted job got to the end

    (inc,) = incidents(tmp_path / "state")
    assert (inc["rule"], inc["status"]) == ("loss-not-finite", "resolved")
    by_action = {a["action"]: a for a in inc["actions"]}
    assert by_action["restore"]["checkpoint"] == str(ckpt / "checkpoint-20")
    assert by_action["restore"]["before_step"] == 25
    assert by_action["restart"]["argv"][-2:] == ["--resume_from_checkpoint", str(ckpt / "checkpoint-20")]
    assert by_action["notify"]["outcome"] == "sent"

    post = webhook.wait(1)[0]["json"]
    assert (post["incident"], post["fault"], post["event"]) == (inc["id"], "nan_inf", "recovered")
    assert [a["action"] for a in post["actions"]] == ["stop", "restore", "restart"]
    assert post["advice"].startswith("Roll back")


def test_unhealthy_checkpoint_before_the_fault_is_passed_over(tmp_path, make_config):
    """The rule fires at step 27, but the loss was NaN from step 23: checkpoint-25 comes before
    the fault and is still not healthy, so checkpoint-20 is the one."""
    config = make_config(rules=["loss-diverged"])
    ckpt = tmp_path / "ckpt"
    cmd = [sys.executable, "-c", TRAIN, str(ckpt), "30", "5", "--nan-at", "23", "--diverged-at", "27"]
    assert run_supervised(config, cmd, dry_run=False) == 0

    assert f"resumed from {ckpt / 'checkpoint-20'}" in job_log(tmp_path)
    assert quarantined(ckpt) == ["checkpoint-25"]
    (inc,) = incidents(tmp_path / "state")
    restore = next(a for a in inc["actions"] if a["action"] == "restore")
    assert restore["before_step"] == 27
    assert "loss nan at step 25" in json.dumps(restore["unhealthy"])


def test_a_second_incident_of_the_same_fault_rides_along_with_the_recovery(tmp_path, make_config, webhook):
    """A NaN loss at step 23 (restore) and, in the same write, a line a notify-only rule of the
    same fault fires on while the first is being acted on: one recovery, one message."""
    config = make_config(rules=["loss-not-finite", "diverged-is-nan"],
                         notify={"webhooks": [{"url": webhook.url, "min_severity": "warning"}]})
    ckpt = tmp_path / "ckpt"
    cmd = [sys.executable, "-c", TRAIN, str(ckpt), "30", "5", "--nan-at", "23", "--diverged-at", "23"]
    assert run_supervised(config, cmd, dry_run=False) == 0

    by_rule = {i["rule"]: i for i in incidents(tmp_path / "state")}
    nan, diverged = by_rule["loss-not-finite"], by_rule["diverged-is-nan"]
    assert (nan["status"], diverged["status"]) == ("resolved", "resolved")
    assert [(a["action"], a["outcome"], a["by"]) for a in diverged["actions"]] == [("notify", "covered", nan["id"])]
    assert next(a for a in nan["actions"] if a["action"] == "restore")["checkpoint"] == str(ckpt / "checkpoint-20")
    assert [p["json"]["incident"] for p in webhook.posts] == [nan["id"]]


def test_job_exit_status_passes_through(tmp_path, make_config):
    config = make_config(restart={"max_restarts": 0})
    assert run_supervised(config, [sys.executable, "-c", CRASH], dry_run=False) == 3
    config = make_config()
    assert run_supervised(config, [sys.executable, "-c", "print('fine')"], dry_run=False) == 0


def test_crashing_job_is_restarted_from_newest_healthy_checkpoint(tmp_path, make_config):
    """An exit with an error and no rule to explain it: restarted like torchrun would."""
    config = make_config(rules=["just-tell"], restart={"max_restarts": 2})
    ckpt = tmp_path / "ckpt"
    story, observer = recorder()
    cmd = [sys.executable, "-c", TRAIN, str(ckpt), "20", "5", "--crash-at", "12"]
    assert run_supervised(config, cmd, dry_run=False, observer=observer) == 0
    assert f"resumed from {ckpt / 'checkpoint-10'}" in job_log(tmp_path)
    exits = [d["exit_code"] for what, d in story if what == "exited"]
    assert exits == [3, 0]
    assert quarantined(ckpt) == []  # a plain restart sets nothing aside


def test_restart_storm_opens_the_circuit_breaker_and_notifies(tmp_path, make_config, webhook):
    config = make_config(restart={"max_restarts": 2, "window_s": 3600},
                         notify={"webhooks": [{"url": webhook.url, "min_severity": "error"}]})
    story, observer = recorder()
    rc = run_supervised(config, [sys.executable, "-c", CRASH], dry_run=False, observer=observer)

    assert rc == 1
    assert [d["exit_code"] for what, d in story if what == "exited"] == [3, 3, 3]
    assert sum(what == "restarted" for what, _ in story) == 2
    assert story[-1][0] in ("gave_up", "notified")
    post = webhook.wait(1)[0]["json"]
    assert post["event"] == "gave_up" and post["severity"] == "critical"
    assert "2 restarts within 3600 s" in post["message"]
    assert job_log(tmp_path).count("starting") == 3


def test_dry_run_notifies_and_says_what_it_would_do(tmp_path, make_config, webhook):
    config = make_config(rules=["loss-not-finite"],
                         notify={"webhooks": [{"url": webhook.url, "min_severity": "warning"}]})
    ckpt = tmp_path / "ckpt"
    cmd = [sys.executable, "-c", TRAIN, str(ckpt), "30", "5", "--nan-at", "23"]
    assert run_supervised(config, cmd, dry_run=True) == 0

    log = job_log(tmp_path)
    assert "resumed from" not in log and "training complete" in log  # never stopped
    assert not (ckpt / ".faultwarden-quarantine").exists()
    (inc,) = incidents(tmp_path / "state")
    assert inc["status"] == "open"
    restore = next(a for a in inc["actions"] if a["action"] == "restore")
    assert restore["outcome"] == "skipped" and restore["reason"] == "dry run"
    assert restore["would"]["checkpoint"] == str(ckpt / "checkpoint-20")
    assert webhook.wait(1)[0]["json"]["event"] == "opened"


def test_hang_stops_job_after_a_stack_dump_attempt(tmp_path, make_config, monkeypatch):
    """py-spy is not installed here: the stop says so, and the job is restarted all the same."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    config = make_config(rules=["hung"])
    cmd = [sys.executable, "-c", TRAIN, str(tmp_path / "ckpt"), "12", "5", "--wedge-at", "7"]
    assert run_supervised(config, cmd, dry_run=False) == 0

    (inc,) = incidents(tmp_path / "state")
    assert (inc["fault"], inc["status"]) == ("hang", "resolved")
    stop = next(a for a in inc["actions"] if a["action"] == "stop")
    assert stop["stacks"] == "py-spy not available"
    restart = next(a for a in inc["actions"] if a["action"] == "restart")
    assert restart["resume"][-1] == str(tmp_path / "ckpt" / "checkpoint-5")  # newest healthy one


def test_hang_stacks_are_dumped_with_py_spy_when_present(tmp_path, make_config, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    spy = bin_dir / "py-spy"
    spy.write_text('#!/bin/sh\necho "Thread 0x1 (idle): MainThread"\necho "args: $*"\n')
    spy.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    config = make_config(rules=["hung"])
    story, observer = recorder()
    cmd = [sys.executable, "-c", TRAIN, str(tmp_path / "ckpt"), "12", "5", "--wedge-at", "7"]
    assert run_supervised(config, cmd, dry_run=False, observer=observer) == 0

    first_pid = next(d["pid"] for what, d in story if what == "started")
    stop = next(a for a in incidents(tmp_path / "state")[0]["actions"] if a["action"] == "stop")
    dump = Path(stop["stacks"]).read_text()
    assert f"args: dump --pid {first_pid}" in dump


def test_sigterm_is_forwarded_to_the_job_and_not_restarted(tmp_path, make_config):
    config = make_config()
    state = tmp_path / "state"
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, config.model_dump_json(),
                               sys.executable, "-c", GRACEFUL], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        log = wait_for(lambda: next(state.glob("runs/*/job.log"), None), what="the job's log")
        wait_for(lambda: "ready" in log.read_text(), what="the job to start")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(60) == 0  # the job's own status: it exited 0 on SIGTERM
    finally:
        runner.kill()
    text = log.read_text()
    assert "got signal 15" in text
    assert text.count("ready") == 1 and "never" not in text


def test_one_daemon_per_state_dir(tmp_path, make_config, capsys):
    config = make_config()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, config.state_dir], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert run_supervised(config, [sys.executable, "-c", "print(1)"], dry_run=False) == 2
        err = capsys.readouterr().err
        assert f"in use by another faultwarden (pid {holder.pid})" in err
        assert config.state_dir in err
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the lock with its holder: the next daemon runs
    assert run_supervised(config, [sys.executable, "-c", "print(1)"], dry_run=False) == 0
