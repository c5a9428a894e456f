"""`faultwarden run --config F -- CMD` as a user runs it: a real CLI process around a real job,
the default rule pack, a webhook receiver on 127.0.0.1. One fault per test: a NaN loss (a real
PyTorch job), a CUDA OOM traceback, a hang, a SIGKILL, a fault that comes back at once, a torn
checkpoint, and log text with shell syntax in the fields the templates use."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import sys

import pytest
from actions_jobs import ECHO_ARGV_TO_FILE, SHELL_BAIT, TRAIN
from conftest import incidents, job_log, quarantined, wait_for

from faultwarden.daemon.actions import templates
from faultwarden.daemon.actions.command import CommandJob


def hook(webhook) -> dict:
    return {"webhooks": [{"url": webhook.url, "min_severity": "warning"}]}


def actions_of(inc: dict) -> dict[str, dict]:
    """The last record of each action on the incident."""
    return {a["action"]: a for a in inc["actions"]}


def the_one_message(webhook, inc: dict) -> dict:
    """The run has ended, so every notification was sent (or failed) before `run` exited: this
    counts them all."""
    assert len(webhook.posts) == 1, [p["json"]["event"] for p in webhook.posts]
    body = webhook.posts[0]["json"]
    assert body["incident"] == inc["id"]
    return body


@pytest.mark.torch
def test_nan_loss_in_a_pytorch_job_is_rolled_back_and_the_run_completes(tmp_path, cli, webhook):
    pytest.importorskip("torch")
    ckpt = tmp_path / "ckpt"
    done = cli([sys.executable, "-m", "faultwarden.model.demo_job", "--output-dir", str(ckpt), "--steps", "30",
                "--save-every", "10", "--nan-at-step", "25", "--step-delay", "0"], notify=hook(webhook), timeout=600)
    assert done.returncode == 0, done.stderr

    events = (next((tmp_path / "state" / "runs").iterdir()) / "events.jsonl").read_text()
    assert "training a 16-32-1 MLP with torch" in events
    assert f"resumed from {ckpt / 'checkpoint-20'} at step 20" in events
    assert "training complete at step 30" in events
    # the restarted job trained on from healthy weights: every loss after step 20 is finite
    history = json.loads((ckpt / "checkpoint-30" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history] == list(range(1, 31))
    assert all(math.isfinite(h["loss"]) for h in history)

    found = incidents(tmp_path / "state")
    inc = next(i for i in found if i["rule"] == "nan-loss")
    assert (inc["fault"], inc["status"]) == ("nan_inf", "resolved")
    assert inc["explanation"]["step"] == 25
    # the NaN grad norms of the steps before the stop may open grad-norm-not-finite: covered
    for other in found:
        if other is not inc:
            assert {(a["outcome"], a["by"]) for a in other["actions"]} == {("covered", inc["id"])}, other
    acts = actions_of(inc)
    assert acts["stop"]["outcome"] == "done"
    assert (acts["restore"]["checkpoint"], acts["restore"]["before_step"]) == (str(ckpt / "checkpoint-20"), 25)
    assert acts["restart"]["argv"][-2:] == ["--resume_from_checkpoint", str(ckpt / "checkpoint-20")]
    assert acts["restart"]["attempt"] == 2
    assert acts["notify"]["outcome"] == "sent"

    body = the_one_message(webhook, inc)
    assert (body["fault"], body["severity"], body["status"]) == ("nan_inf", "critical", "resolved")
    assert [a["action"] for a in body["actions"]] == ["stop", "restore", "restart"]
    assert any("loss=nan" in line for line in body["evidence"])


def test_cuda_oom_traceback_restores_and_the_run_completes(tmp_path, cli, webhook):
    ckpt = tmp_path / "ckpt"
    done = cli([sys.executable, "-c", TRAIN, str(ckpt), "20", "5", "--oom-at", "12"], notify=hook(webhook))
    assert done.returncode == 0, done.stderr

    log = job_log(tmp_path)
    assert "torch.OutOfMemoryError: CUDA out of memory" in log
    assert f"resumed from {ckpt / 'checkpoint-10'}" in log and '"training complete"' in log
    (inc,) = incidents(tmp_path / "state")
    assert (inc["rule"], inc["fault"], inc["status"]) == ("cuda-oom", "cuda_oom", "resolved")
    assert inc["source"]["line"] == log.splitlines().index("Traceback (most recent call last):") + 1
    acts = actions_of(inc)
    assert acts["stop"]["exit_code"] == 1  # the OOM had ended the job already
    assert acts["restore"]["checkpoint"] == str(ckpt / "checkpoint-10")
    assert acts["restart"]["resume"] == ["--resume_from_checkpoint", str(ckpt / "checkpoint-10")]
    body = the_one_message(webhook, inc)
    assert body["fault"] == "cuda_oom" and body["advice"].startswith("Lower the per-device batch size")


HANG_IN_3S = """
rules:
  - id: training-hang
    override: true
    fault: hang
    severity: error
    advice: Dump the stacks of the stuck processes.
    flatline: {field: ml.step, for: 3s}
    group_by: [labels.run_id]
    actions: [restart, notify]
"""


def test_hang_no_progress_for_the_configured_time_restarts_the_job(tmp_path, cli, webhook):
    ckpt = tmp_path / "ckpt"
    # the step stops at 7 and the job says nothing more: only the silence tells
    done = cli([sys.executable, "-c", TRAIN, str(ckpt), "12", "5", "--wedge-at", "7"], rules=HANG_IN_3S,
               notify=hook(webhook))
    assert done.returncode == 0, done.stderr

    (inc,) = incidents(tmp_path / "state")
    assert (inc["rule"], inc["fault"], inc["status"]) == ("training-hang", "hang", "resolved")
    acts = actions_of(inc)
    assert "stacks" in acts["stop"]  # the py-spy dump, or why there is none
    assert acts["stop"]["exit_code"] == 128 + signal.SIGTERM
    assert acts["restart"]["resume"][-1] == str(ckpt / "checkpoint-5")  # plain restart: newest healthy
    assert quarantined(ckpt) == []
    log = job_log(tmp_path)
    assert log.count("WEDGED") == 1 and '"training complete"' in log
    assert the_one_message(webhook, inc)["fault"] == "hang"


def test_sigkill_of_the_job_is_an_incident_and_the_job_resumes(tmp_path, cli, webhook):
    ckpt = tmp_path / "ckpt"
    killed: list[int] = []

    def kill_when_wedged(proc):  # as the kernel's OOM killer would: SIGKILL, no last words
        def wedged():
            logs = list((tmp_path / "state").glob("runs/*/job.log"))
            return logs and re.search(r"WEDGED waiting on a collective \(pid (\d+)\)", logs[0].read_text())
        pid = int(wait_for(wedged, what="the job to wedge").group(1))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    done = cli([sys.executable, "-c", TRAIN, str(ckpt), "12", "5", "--wedge-at", "7"], notify=hook(webhook),
               on_start=kill_when_wedged)
    assert done.returncode == 0, done.stderr

    log = job_log(tmp_path)
    note = f"faultwarden: Signal 9 (SIGKILL) received by PID {killed[0]} (the job, attempt 1); exit status 137"
    assert note in log and '"training complete"' in log
    (inc,) = incidents(tmp_path / "state")
    assert (inc["rule"], inc["fault"], inc["status"]) == ("host-oom-killed", "host_oom_killed", "resolved")
    assert inc["message"] == note
    assert inc["source"]["line"] == next(n for n, line in enumerate(log.splitlines(), 1) if note in line)
    acts = actions_of(inc)
    assert acts["stop"]["exit_code"] == 137
    assert acts["restart"]["resume"] == ["--resume_from_checkpoint", str(ckpt / "checkpoint-5")]
    assert f"resumed from {ckpt / 'checkpoint-5'}" in log
    assert the_one_message(webhook, inc)["fault"] == "host_oom_killed"


def test_a_fault_that_recurs_at_once_trips_the_circuit_breaker(tmp_path, cli, webhook):
    ckpt = tmp_path / "ckpt"
    done = cli([sys.executable, "-c", TRAIN, str(ckpt), "20", "5", "--oom-at", "7", "--every-attempt"],
               restart={"max_restarts": 2, "window_s": 3600}, notify=hook(webhook))
    assert done.returncode == 1, done.stderr

    assert job_log(tmp_path).count("torch.OutOfMemoryError: CUDA out of memory") == 3  # 1 start + 2 restarts
    found = sorted(incidents(tmp_path / "state"), key=lambda i: i["first_seen"])
    assert [(i["rule"], i["status"]) for i in found] == [("cuda-oom", "resolved")] * 2 + [("cuda-oom", "failed")]
    last = actions_of(found[-1])
    assert last["restart"]["outcome"] == "gave_up"
    assert last["restart"]["reason"] == "2 restarts within 3600 s used up (circuit breaker open)"
    assert [p["json"]["status"] for p in webhook.posts] == ["resolved", "resolved", "failed"]
    assert webhook.posts[-1]["json"]["incident"] == found[-1]["id"]


def test_a_truncated_newest_checkpoint_is_passed_over_with_the_reason(tmp_path, cli):
    ckpt = tmp_path / "ckpt"
    # checkpoint-20 is cut in half after its save (a torn write); the loss is NaN at step 25
    done = cli([sys.executable, "-c", TRAIN, str(ckpt), "30", "5", "--nan-at", "25", "--truncate-at", "20"])
    assert done.returncode == 0, done.stderr

    (inc,) = incidents(tmp_path / "state")
    restore = actions_of(inc)["restore"]
    assert (restore["checkpoint"], restore["before_step"]) == (str(ckpt / "checkpoint-15"), 25)
    why = restore["unhealthy"][str(ckpt / "checkpoint-20")]
    assert "model.pt: damaged zip archive (truncated: no end-of-central-directory record" in why
    assert "sha256" in why and "does not match" in why
    assert quarantined(ckpt) == ["checkpoint-20", "checkpoint-25"]
    assert f"resumed from {ckpt / 'checkpoint-15'}" in job_log(tmp_path)


SHARD_RULE = """
rules:
  - id: shard-failed
    fault: data_error
    severity: error
    match: {message: {regex: 'shard failed'}}
    group_by: [labels.run_id, labels.shard]
    actions: [restore]
"""


def test_shell_syntax_in_logged_fields_reaches_the_job_as_one_argument(tmp_path, cli):
    """The checkpoint path and a grouped label both come from the job's log and both carry
    shell syntax; the resume template puts them in argv, where they stay inert."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    shard = f"s1; rm -rf {victim}; $(touch {tmp_path}/pwned) `touch {tmp_path}/pwned2` {{checkpoint}}"
    ckpt = tmp_path / "ckpt"
    done = cli([sys.executable, "-c", SHELL_BAIT, str(ckpt), shard], rules=SHARD_RULE,
               restore={"resume": ["--resume", "{checkpoint}", "--shard={shard}", "--step", "{step}"]})
    assert done.returncode == 0, done.stderr

    bait = ckpt / "step-20; rm -rf x; touch pwned-name $(touch pwned-name2) {step}.pt"
    argv = [json.loads(line)["argv"] for line in job_log(tmp_path).splitlines() if '"argv"' in line]
    assert argv == [["--resume", str(bait), f"--shard={shard}", "--step", "20"]]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pwned")) == []
    assert (victim / "keep").exists() and bait.exists()


def test_restart_command_template_keeps_log_text_one_argument(tmp_path):
    """Service mode: `actions.restart.command` filled with a run id that came from a log."""
    run_id = f"r1; rm -rf ~; $(touch {tmp_path}/pwned) {{slurm_job_id}}"
    out = tmp_path / "argv.json"
    job = CommandJob([sys.executable, "-c", ECHO_ARGV_TO_FILE, str(out), "train@{run_id}", "{slurm_job_id}", "{nope}"])
    job_id = f"42`touch {tmp_path}/pwned2`"
    names = templates.values({"labels.run_id": run_id, "labels.slurm_job_id": job_id},
                             checkpoint="/c/checkpoint-5", step=5)
    details = job.relaunch(["--resume_from_checkpoint", "/c/checkpoint-5"], {}, names)

    assert details["exit_code"] == 0
    assert json.loads(out.read_text()) == [f"train@{run_id}", job_id, "{nope}",
                                           "--resume_from_checkpoint", "/c/checkpoint-5"]
    assert not list(tmp_path.glob("pwned*"))
