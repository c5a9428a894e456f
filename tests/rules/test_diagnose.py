"""`diagnose` over real files: the JSON shape, the timeline, inputs (gz, folders, globs) and
hangs, through the real parser, rule engine, pipeline and incident book."""
from __future__ import annotations

import gzip
import json
import os

import pytest
from click.testing import CliRunner

from faultwarden.daemon.cli import cli
from faultwarden.daemon.diagnose import InputError, diagnose, expand
from faultwarden.daemon.report import render
from faultwarden.detectors.rules import RuleSet

from .helpers import faultwarden, write

# A Hugging Face Trainer run that goes NaN, then dies of a CUDA OOM while trying to go on.
TRAIN_LOG = """\
2024-05-01 12:00:00,000 - transformers.trainer - INFO - ***** Running training *****
2024-05-01 12:00:00,002 - transformers.trainer - INFO -   Num examples = 50,000
{'loss': 2.3412, 'grad_norm': 1.214, 'learning_rate': 2e-05, 'epoch': 0.1}
{'loss': 2.1034, 'grad_norm': 1.131, 'learning_rate': 2e-05, 'epoch': 0.2}
{'loss': 1.9876, 'grad_norm': 1.087, 'learning_rate': 2e-05, 'epoch': 0.3}
{'loss': nan, 'grad_norm': nan, 'learning_rate': 2e-05, 'epoch': 0.4}
{'loss': nan, 'grad_norm': nan, 'learning_rate': 2e-05, 'epoch': 0.5}
2024-05-01 12:20:00,000 - transformers.trainer - INFO - Saving model checkpoint to /ckpt/checkpoint-500
Traceback (most recent call last):
  File "/workspace/train.py", line 212, in <module>
    trainer.train()
  File "/usr/local/lib/python3.11/site-packages/torch/_tensor.py", line 581, in backward
    torch.autograd.backward(
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.21 GiB is free.
"""

INCIDENT_KEYS = {"id", "fault", "severity", "status", "rule", "first_seen", "last_seen", "count", "group",
                 "source", "message", "advice", "evidence", "explanation", "actions"}
SUMMARY_KEYS = {"files", "lines", "events", "parse_errors", "by_fault", "runs"}


@pytest.fixture(scope="module")
def pack():
    return RuleSet.load([])


def hang_log(gap_minutes: float, steps_after: int = 1) -> str:
    """JSON lines of a run logging a step a minute, with a gap after step 3."""
    lines, t = [], 0.0
    for step in range(1, 4 + steps_after):
        if step == 4:
            t += gap_minutes * 60
        lines.append(json.dumps({"@timestamp": 1714564800 + t, "step": step, "loss": 2.0, "run_id": "r1"}))
        t += 60
    return "\n".join(lines) + "\n"


def test_json_report_has_the_documented_shape(tmp_path, pack):
    log = write(tmp_path / "train.log", TRAIN_LOG)
    out = json.loads(render(diagnose([str(log)], pack), "json"))
    assert set(out) == {"incidents", "summary"}
    assert set(out["summary"]) == SUMMARY_KEYS
    for inc in out["incidents"]:
        assert set(inc) == INCIDENT_KEYS
        assert set(inc["source"]) == {"path", "line"}
    by_rule = {i["rule"]: i for i in out["incidents"]}
    assert set(by_rule) == {"nan-loss", "cuda-oom"}

    nan = by_rule["nan-loss"]
    assert (nan["fault"], nan["severity"], nan["status"]) == ("nan_inf", "critical", "open")
    assert nan["source"] == {"path": str(log), "line": 6} and nan["count"] == 2
    assert nan["evidence"][0].startswith("{'loss': nan") and nan["explanation"]["value"] == "nan"
    assert "learning rate" in nan["advice"]

    oom = by_rule["cuda-oom"]
    assert oom["source"] == {"path": str(log), "line": 9}
    assert oom["message"].startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert oom["evidence"][0].startswith("Traceback (most recent call last):")
    assert oom["group"]["host.name"] and oom["actions"] == []

    summary = out["summary"]
    assert (summary["files"], summary["lines"], summary["events"], summary["parse_errors"]) == (1, 14, 9, 0)
    assert summary["by_fault"] == {"cuda_oom": 1, "nan_inf": 1}
    (run,) = summary["runs"]
    assert run["run"] == str(log) and run["incidents"] == [nan["id"], oom["id"]]  # in time order
    assert run["first_error"]["line"] == 9 and run["first_error"]["message"].startswith("torch.OutOfMemoryError")


def test_the_same_log_gives_the_same_incident_ids(tmp_path, pack):
    log = write(tmp_path / "train.log", TRAIN_LOG)
    first = [i.id for i in diagnose([str(log)], pack).incidents]
    assert first == [i.id for i in diagnose([str(log)], pack).incidents]


def test_the_end_of_a_log_is_not_a_hang_but_a_gap_inside_is(tmp_path, pack):
    ended = write(tmp_path / "ended.jsonl", hang_log(gap_minutes=0, steps_after=0))
    assert [i.rule for i in diagnose([str(ended)], pack).incidents] == []
    gap = write(tmp_path / "gap.jsonl", hang_log(gap_minutes=25))
    (inc,) = diagnose([str(gap)], pack).incidents
    assert (inc.rule, inc.fault, inc.source["line"]) == ("training-hang", "hang", 3)
    assert inc.group["labels.run_id"] == "r1" and "no progress of ml.step" in inc.message


def test_gz_folders_and_globs(tmp_path, pack):
    write(tmp_path / "logs" / "node1" / "rank0.log", TRAIN_LOG)
    (tmp_path / "logs" / "node2").mkdir()
    with gzip.open(tmp_path / "logs" / "node2" / "rank1.log.gz", "wt") as f:
        f.write("2024-05-01 12:00:00,000 - io - ERROR - OSError: [Errno 28] No space left on device\n")
    write(tmp_path / "logs" / ".hidden" / "x.log", "torch.OutOfMemoryError: CUDA out of memory.\n")
    write(tmp_path / "other" / "serve.log", "GPU has fallen off the bus.\n")

    files = expand([str(tmp_path / "logs"), str(tmp_path / "oth*" / "*.log")])
    assert [os.path.relpath(f, tmp_path) for f in files] == ["logs/node1/rank0.log", "logs/node2/rank1.log.gz",
                                                             "other/serve.log"]
    result = diagnose(files, pack)
    assert sorted(i.rule for i in result.incidents) == ["cuda-oom", "disk-full", "gpu-hardware", "nan-loss"]
    disk = next(i for i in result.incidents if i.rule == "disk-full")
    assert disk.source == {"path": str(tmp_path / "logs/node2/rank1.log.gz"), "line": 1}
    assert result.lines == 14 + 1 + 1 and len(result.runs) == 3

    with pytest.raises(InputError, match="no such file or folder"):
        expand([str(tmp_path / "missing.log")])
    with pytest.raises(InputError, match="no file matches"):
        expand([str(tmp_path / "*.nothing")])


def test_human_formats_escape_log_content(tmp_path, pack):
    log = write(tmp_path / "x.log", "<script>alert(1)</script> RuntimeError: CUDA out of memory. ```\n")
    result = diagnose([str(log)], pack)
    html = render(result, "html")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html and "<link" not in html  # self-contained
    md = render(result, "markdown")
    assert "````text\n<script>" in md  # evidence fenced longer than any backticks it holds
    text = render(result, "text")
    assert "CRITICAL  cuda_oom" in text and "would restore, notify" in text and "advice" in text


def test_diagnose_command_fail_on_and_output(tmp_path):
    log = write(tmp_path / "train.log", TRAIN_LOG)
    runner = CliRunner()
    done = runner.invoke(cli, ["diagnose", "--fail-on", "error", "--format", "json", "-o", str(tmp_path / "r.json"), str(log)])
    assert done.exit_code == 1, done.output
    assert len(json.loads((tmp_path / "r.json").read_text())["incidents"]) == 2
    assert runner.invoke(cli, ["diagnose", "--fail-on", "critical", str(tmp_path / "train.log")]).exit_code == 1
    quiet = write(tmp_path / "quiet.log", "{'loss': 0.5, 'epoch': 1.0}\n")
    done = runner.invoke(cli, ["diagnose", "--fail-on", "warning", str(quiet)])
    assert done.exit_code == 0 and "No incidents found." in done.output


def test_diagnose_with_a_rule_folder_and_a_config(tmp_path):
    log = write(tmp_path / "train.log", TRAIN_LOG)
    mine = write(tmp_path / "rules" / "off.yaml", "rules:\n  - {id: nan-loss, enabled: false}\n")
    config = write(tmp_path / "fw.yaml", f"sources:\n  - paths: ['{tmp_path}/*.log']\n    run_id: run-42\n")
    done = CliRunner().invoke(cli, ["diagnose", "--config", str(config), "--rules", str(mine.parent),
                                    "--format", "json", str(log)])
    out = json.loads(done.output)
    assert [i["rule"] for i in out["incidents"]] == ["cuda-oom"]
    assert out["incidents"][0]["group"]["labels.run_id"] == "run-42"  # the source's run id
    assert [r["run"] for r in out["summary"]["runs"]] == ["run-42"]


def test_exit_codes_through_the_real_command(tmp_path):
    log = write(tmp_path / "train.log", TRAIN_LOG)
    found = faultwarden("diagnose", "--fail-on", "critical", str(log))
    assert found.returncode == 1, found.stderr
    assert "2 incidents found: 2 critical." in found.stdout
    missing = faultwarden("diagnose", str(tmp_path / "nope.log"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"faultwarden: {tmp_path / 'nope.log'}: no such file or folder"


def test_a_loss_spike_after_a_nan_is_reported_as_its_consequence(tmp_path):
    """The NaN comes first; the loss that jumps two steps later is the same trouble: recorded,
    shown, but inhibited (no message or action of its own). Another run's spike is not."""
    lines = []
    for run, nan_at in (("r9", 101), ("r10", None)):
        for step in range(1, 121):
            loss = float("nan") if step == nan_at else 90.0 if step == 103 else 2.0 - step * 0.001
            lines.append(json.dumps({"@timestamp": 1_767_571_200 + step, "message": "train step",
                                     "labels": {"run_id": run}, "ml": {"step": step, "loss": loss}}))
    log = write(tmp_path / "train.log", "\n".join(lines) + "\n")
    out = json.loads(faultwarden("diagnose", "--format", "json", str(log)).stdout)
    by = {(i["group"]["labels.run_id"], i["fault"]): i for i in out["incidents"]}
    assert set(by) == {("r9", "nan_inf"), ("r9", "loss_spike"), ("r10", "loss_spike")}
    assert by["r9", "loss_spike"]["status"] == "inhibited"
    assert by["r9", "nan_inf"]["status"] == by["r10", "loss_spike"]["status"] == "open"
    text = faultwarden("diagnose", str(log)).stdout
    assert "3 incidents found: 1 critical, 2 warning (1 brought about by another, inhibited)." in text
    assert f"none: inhibited by incident {by['r9', 'nan_inf']['id']}, whose fault came first" in text
    off = write(tmp_path / "fw.yaml", "incidents:\n  inhibit: []\n")  # the config turns it off
    out = json.loads(faultwarden("diagnose", "--config", str(off), "--format", "json", str(log)).stdout)
    assert {i["status"] for i in out["incidents"]} == {"open"}
