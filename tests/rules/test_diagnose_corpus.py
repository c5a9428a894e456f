"""`faultwarden diagnose --format json` over whole logs, through the real command: a run with
many faults gives each its right fault at its line; a 100k-line healthy run gives nothing; a
log written by the job-side instrumentation with a NaN gives a `nan_inf` incident at that step."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from datetime import datetime

import pytest

from .healthy_log import HOST, RUN_ID, healthy_training_log, iso
from .helpers import faultwarden


def diagnose_json(*paths) -> dict:
    done = faultwarden("diagnose", "--format", "json", *map(str, paths))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# --- nothing in a healthy run --------------------------------------------------------------
def test_a_100k_line_healthy_training_log_raises_nothing(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("\n".join(healthy_training_log(100_000)) + "\n")
    out = diagnose_json(log)
    assert [(i["rule"], i["source"]["line"], i["message"]) for i in out["incidents"]] == []
    summary = out["summary"]
    assert (summary["lines"], summary["events"], summary["parse_errors"]) == (100_000, 100_000, 0)
    assert summary["by_fault"] == {}


# --- a run with many faults ------------------------------------------------------------------
class Story:
    """A healthy run with faults put in at known places; `expect` is (rule, fault, line)."""

    def __init__(self, healthy: list[str]):
        self.lines = list(healthy)
        self.expect: set[tuple[str, str, int]] = set()
        self.straggler_lines: list[int] = []  # the lines where one rank lags

    def steps(self, start: int, count: int):
        """Indexes of the JSON step lines from the `start`-th line on (`count` of them)."""
        found = [i for i in range(start, len(self.lines)) if self.lines[i].startswith('{"@timestamp"')
                 and '"train-step"' in self.lines[i]][:count]
        assert len(found) == count
        return found

    def change(self, i: int, **ml) -> None:
        doc = json.loads(self.lines[i])
        doc["ml"].update(ml)
        self.lines[i] = json.dumps(doc)

    def factor(self, i: int, **factors: float) -> None:
        doc = json.loads(self.lines[i])
        self.change(i, **{k: doc["ml"][k] * f for k, f in factors.items()})

    def append(self, text: str, rule: str | None = None, fault: str | None = None) -> None:
        if rule is not None:
            self.expect.add((rule, fault, len(self.lines) + 1))  # the record's first line
        self.lines.extend(text.splitlines())


def faulty_training_run() -> Story:
    story = Story(healthy_training_log(6000)[:-3])  # it does not end well: no "Training completed"
    first = story.steps(2400, 4)  # one logging step: four rank lines
    for i in first:
        story.factor(i, loss=3.0)  # a loss spike on every rank
    story.expect.add(("loss-spike", "loss_spike", first[0] + 1))
    drop = story.steps(3200, 4)
    for i in drop:
        story.factor(i, samples_per_s=0.4, tokens_per_s=0.4)  # throughput falls by 60%
    story.expect |= {("throughput-drop-samples", "throughput_drop", drop[0] + 1),
                     ("throughput-drop-tokens", "throughput_drop", drop[0] + 1)}
    slow = [i for i in story.steps(4000, 160) if '"rank":3,' in story.lines[i]]  # rank 3 lags for ~3 min
    for i in slow:
        story.factor(i, step_time_s=2.0)
    nan_at = story.steps(5000, 1)[0]
    story.change(nan_at, loss=math.nan)  # json.dumps writes NaN, as the instrumentation does
    story.expect.add(("nan-loss", "nan_inf", nan_at + 1))

    # Then the job hangs in a collective: 15 minutes of silence, and everything that follows.
    # The hang is placed where the step last moved: the first line of the last step.
    docs = [(i, json.loads(x)) for i, x in enumerate(story.lines) if x.startswith('{"@timestamp"')]
    last_step = max(d["ml"]["step"] for _, d in docs if "step" in d.get("ml", {}))
    moved = min(i for i, d in docs if d.get("ml", {}).get("step") == last_step)
    story.expect.add(("training-hang", "hang", moved + 1))
    t = max(datetime.fromisoformat(d["@timestamp"].replace("Z", "+00:00")).timestamp() for _, d in docs)
    heartbeat = {"@timestamp": iso(t + 900), "log.level": "warning", "message": "rank 0: waiting in ALLREDUCE",
                 "labels": {"run_id": RUN_ID}, "host": {"name": HOST}}
    story.append(json.dumps(heartbeat))
    story.append("[rank3]:[E501 12:10:00.000000000 ProcessGroupNCCL.cpp:616] [Rank 3] Watchdog caught collective "
                 "operation timeout: WorkNCCL(SeqNum=120, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) "
                 "ran for 600010 milliseconds before timing out.", "nccl-timeout", "nccl_timeout")
    story.append("[Wed May  1 12:00:00 2024] NVRM: Xid (PCI:0000:3b:00): 79, pid=48216, name=python, GPU has fallen off "
                 "the bus.", "gpu-hardware", "gpu_hardware")
    story.append(textwrap.dedent("""\
        Traceback (most recent call last):
          File "/workspace/train.py", line 198, in <module>
            loss = criterion(logits, labels)
        RuntimeError: CUDA error: device-side assert triggered
        Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."""), "cuda-kernel-error", "cuda_kernel_error")
    story.append(textwrap.dedent("""\
        Traceback (most recent call last):
          File "/workspace/train.py", line 212, in <module>
            loss.backward()
        torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which 1.21 GiB is free."""),
                 "cuda-oom", "cuda_oom")
    story.append("[Wed May  1 12:00:01 2024] Out of memory: Killed process 48290 (pt_data_worker) total-vm:87334532kB, "
                 "anon-rss:60334112kB, file-rss:0kB, shmem-rss:8kB, UID:1000 pgtables:143712kB oom_score_adj:0",
                 "host-oom-killed", "host_oom_killed")
    story.append("2024-05-01 12:00:02,000 - train - ERROR - OSError: [Errno 28] No space left on device: "
                 "'/checkpoints/run-42/checkpoint-6000/optimizer.pt'", "disk-full", "disk_full")
    story.append(textwrap.dedent("""\
        Traceback (most recent call last):
          File "/workspace/train.py", line 88, in <module>
            state = torch.load(args.resume, map_location="cpu")
        RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory"""),
                 "checkpoint-corrupt", "checkpoint_corrupt")
    story.append("PIL.UnidentifiedImageError: cannot identify image file '/data/train/n01440764_10026.JPEG'",
                 "data-error", "data_error")
    story.append("[2024-05-01 12:00:03,000] torch.distributed.elastic.multiprocessing.api: [ERROR] failed (exitcode: 1) "
                 "local_rank: 0 (pid: 48213) of binary: /usr/bin/python3", "worker-failed", "distributed_worker_failure")
    story.straggler_lines = [i + 1 for i in slow]
    return story


def serving_log() -> tuple[list[str], set[tuple[str, str, int]]]:
    """An inference service: healthy requests, then slow ones, then server errors."""
    lines, expect = [], set()
    t = 1_714_564_800.0

    def request(latency: float, status: int = 200, level: str = "info") -> str:
        return json.dumps({"@timestamp": iso(t), "log.level": level, "message": f"POST /v1/generate {status}",
                           "service": {"name": "llm-api"}, "host": {"name": "serve-1"},
                           "http": {"response": {"status_code": status}}, "ml": {"latency_ms": latency}})

    for i in range(300):
        t += 1
        lines.append(request(120 + (i * 37) % 90))
    slow_from = len(lines) + 1
    for i in range(40):
        t += 1
        lines.append(request(1500 + i * 10))
    expect.add(("latency-slo", "latency_slo", slow_from))  # placed at the window's oldest event (checked below)
    first_error = len(lines) + 1
    for i in range(30):
        t += 1
        lines.append(request(90, status=503, level="error"))
    expect.add(("http-5xx-rate", "error_rate", first_error))
    expect.add(("error-rate", "error_rate", first_error))
    lines.append("WARNING 05-01 12:06:11 scheduler.py:1089] Sequence group 1423 is preempted by PreemptionMode.RECOMPUTE "
                 "mode because there is not enough KV cache space. This can affect the end-to-end performance. Increase "
                 "gpu_memory_utilization or tensor_parallel_size to provide more KV cache memory. "
                 "total_num_cumulative_preemption=51")
    expect.add(("kv-cache-preemption", "latency_slo", len(lines)))
    assert slow_from < first_error
    return lines, expect


def test_a_log_with_many_faults_gives_each_its_fault_at_its_line(tmp_path):
    story = faulty_training_run()
    train = tmp_path / "train.log"
    train.write_text("\n".join(story.lines) + "\n")
    serve_lines, serve_expect = serving_log()
    serve = tmp_path / "serve.log"
    serve.write_text("\n".join(serve_lines) + "\n")

    out = diagnose_json(train, serve)
    got_train = {(i["rule"], i["fault"], i["source"]["line"]) for i in out["incidents"]
                 if i["source"]["path"] == str(train)}
    (straggler,) = [x for x in got_train if x[0] == "straggler-rank"]
    assert got_train - {straggler} == story.expect
    # The lagging rank is found within its first few slow steps (its level is the mean of a minute).
    assert straggler[1] == "throughput_drop" and straggler[2] in story.straggler_lines[:4]
    got_serve = {(i["rule"], i["fault"], i["source"]["line"]) for i in out["incidents"]
                 if i["source"]["path"] == str(serve)}
    assert {x for x in got_serve if x[0] != "latency-slo"} == {x for x in serve_expect if x[0] != "latency-slo"}
    (latency,) = [x for x in got_serve if x[0] == "latency-slo"]
    slow_from = next(line for rule, _, line in serve_expect if rule == "latency-slo")
    assert latency[1] == "latency_slo" and slow_from - 300 <= latency[2] < slow_from  # a 5-minute window
    by_fault = out["summary"]["by_fault"]
    assert set(by_fault) == {f for _, f, _ in story.expect | serve_expect | {straggler}}
    everything = set(by_fault) | {"anomaly"}
    from faultwarden.detectors.finding import FAULTS

    assert everything == set(FAULTS)  # every fault class a log can show, in one diagnosis

    nan = next(i for i in out["incidents"] if i["rule"] == "nan-loss")
    assert nan["explanation"]["step"] == json.loads(story.lines[nan["source"]["line"] - 1])["ml"]["step"]
    assert nan["group"] == {"labels.run_id": RUN_ID, "host.name": HOST}


# --- the job's own instrumentation -------------------------------------------------------------
JOB = """\
import math, sys
from faultwarden.model import logging as fw

fw.configure(path=sys.argv[1], run_id="run-7", service="train")
for step in range(1, 301):
    loss = 2.5 * math.exp(-step / 200) + 0.3 + 0.01 * math.sin(step)
    if step == int(sys.argv[2]):
        loss = float("nan")
    fw.log_step(step, loss=loss, grad_norm=0.9 + 0.05 * math.cos(step), learning_rate=3e-4,
                step_time_s=0.25, samples_per_s=32.0)
fw.get_logger("train").info("training finished")
"""


def test_a_nan_written_by_the_instrumentation_is_a_nan_inf_incident_at_its_step(tmp_path):
    log = tmp_path / "job.jsonl"
    script = tmp_path / "job.py"
    script.write_text(JOB)
    subprocess.run([sys.executable, str(script), str(log), "137"], check=True, timeout=120)
    lines = log.read_text().splitlines()
    assert len(lines) == 301 and '"loss":NaN' in lines[136]  # the job wrote it as the NaN token

    out = diagnose_json(log)
    (inc,) = out["incidents"]
    assert (inc["fault"], inc["rule"], inc["severity"]) == ("nan_inf", "nan-loss", "critical")
    assert inc["source"] == {"path": str(log), "line": 137}
    assert inc["explanation"] == {"field": "ml.loss", "value": "nan", "step": 137}
    assert inc["group"] == {"labels.run_id": "run-7", "host.name": json.loads(lines[0])["host"]["name"]}
    assert inc["message"] == "ml.loss is nan at step 137"
    assert out["summary"]["runs"][0]["run"] == "run-7"


@pytest.mark.parametrize("nan_step", [1, 300])
def test_a_nan_at_the_first_or_last_step_is_found_too(tmp_path, nan_step):
    log = tmp_path / "job.jsonl"
    (tmp_path / "job.py").write_text(JOB)
    subprocess.run([sys.executable, str(tmp_path / "job.py"), str(log), str(nan_step)], check=True, timeout=120)
    (inc,) = diagnose_json(log)["incidents"]
    assert (inc["fault"], inc["source"]["line"], inc["explanation"]["step"]) == ("nan_inf", nan_step, nan_step)
