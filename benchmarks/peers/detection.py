"""Comparison 2: time to detect. A fault line is appended to a log; the clock stops when the
notification reaches a local webhook (peers/webhook.py, on 127.0.0.1).

Both tools watch the same appends at the same time:
- faultwarden in service mode (`faultwarden run --config F`): it tails the log, runs its default
  rule pack (the `cuda-oom` rule fires), notifies the webhook, and ships every event to the
  node's `fwbench-detect-events-*` index;
- ElastAlert2 (from PyPI, in its own venv) reads that very index through peers/es_info_shim.py
  with an equivalent rule (peers/elastalert-rule.yaml.tmpl: type `any` on the message, HTTP POST
  alerter to the same webhook). So its time includes what any ES-based alerting needs: the
  shipper's flush (faultwarden's `flush_interval_s`, 1 s), the index refresh (1 s), its query
  schedule (`run_every`).

Each trial's fault line carries its own run id (`bench-trial-...`): a new incident for
faultwarden (rules group by run), a new match for ElastAlert2, and the marker by which the
webhook tells the trials apart. t0 is taken just before the line is written (one write(2) on an
O_APPEND descriptor); t1 when the webhook has read the POST.

Phases: ElastAlert2 at its documented `run_every: {minutes: 1}` (5 trials, appended at random
moments over ~2 minutes so they fall anywhere in its schedule, all waited for together), then at
`run_every: {seconds: 1}` (30 trials, one after another, a random pause of 0-1 s between).
faultwarden answers every trial of both phases.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

from common import EA_VENV, FAULTWARDEN, OOM, PEERS, VENV, Child, ecs_line, fmt, log, percentile, ratio, spread
from node import Node
from webhook import Webhook

PREFIX = "fwbench-detect"
RNG = random.Random(11)


class FaultLog:
    """The log the trials append to."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # Some ordinary history first, as a job's log would have.
        with open(path, "w") as fh:
            for i in range(20):
                fh.write(ecs_line(time.time(), "info", "train step", "bench-history",
                                  ',"ml":{"step":%d,"loss":%.3f}' % (i, 2.0 - i / 100)))
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def append_fault(self, marker: str) -> float:
        line = ecs_line(time.time(), "error", OOM, marker,
                        ',"error":{"type":"torch.OutOfMemoryError","message":"CUDA out of memory"}').encode()
        t0 = time.time()
        os.write(self.fd, line)
        return t0

    def close(self) -> None:
        os.close(self.fd)


def start_faultwarden(work: Path, node: Node, hook: Webhook, logdir: Path) -> Child:
    cfg = work / "faultwarden.yaml"
    cfg.write_text(json.dumps({
        "sources": [{"paths": [str(logdir / "*.log")], "service": "llm-pretrain"}],
        "elasticsearch": {"hosts": [node.url], "index_prefix": PREFIX},
        "notify": {"webhooks": [{"url": hook.url("faultwarden"), "min_severity": "warning"}]},
        "state_dir": str(work / "faultwarden-state"),
        "logging": {"level": "warning", "format": "json"},
    }))
    return Child([str(FAULTWARDEN), "run", "--config", str(cfg)], work, "faultwarden-service")


class ElastAlert:
    def __init__(self, work: Path, node: Node, hook: Webhook):
        self.dir = work / "elastalert"
        (self.dir / "rules").mkdir(parents=True, exist_ok=True)
        self.work, self.node, self.hook = work, node, hook
        port_file = self.dir / "shim.port"
        self.shim = Child([str(VENV / "bin/python"), str(PEERS / "es_info_shim.py"), "--upstream", node.url,
                           "--port-file", str(port_file)], work, "es-info-shim")
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if not self.shim.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the ES info shim did not start:\n{self.shim.tail()}")
            time.sleep(0.1)
        self.port = int(port_file.read_text())
        (self.dir / "rules" / "cuda-oom.yaml").write_text((PEERS / "elastalert-rule.yaml.tmpl").read_text().format(
            index=f"{PREFIX}-events-*", webhook=hook.url("elastalert")))
        self.proc: Child | None = None
        self.version = subprocess.run([str(EA_VENV / "bin/python"), "-c",
                                       "import importlib.metadata as m; print(m.version('elastalert2'))"],
                                      capture_output=True, text=True).stdout.strip()

    def config(self, run_every: str) -> Path:
        cfg = self.dir / "config.yaml"
        cfg.write_text((PEERS / "elastalert-config.yaml.tmpl").read_text().format(
            rules=self.dir / "rules", run_every=run_every, port=self.port, writeback="fwbench_elastalert"))
        return cfg

    def start(self, run_every: str, name: str) -> None:
        cfg = self.config(run_every)
        if not (self.dir / "index-created").exists():
            done = subprocess.run([str(EA_VENV / "bin/elastalert-create-index"), "--config", str(cfg)],
                                  capture_output=True, text=True, cwd=self.dir, timeout=300)
            if done.returncode:
                raise RuntimeError(f"elastalert-create-index failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            (self.dir / "index-created").touch()
        self.proc = Child([str(EA_VENV / "bin/elastalert"), "--config", str(cfg), "--verbose"], self.work, name,
                          cwd=self.dir)
        # Ready once its first query ran ("Ran cuda-oom from ... query hits").
        deadline = time.monotonic() + 180
        while "Ran cuda-oom" not in self.proc.tail(200_000):
            if not self.proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"ElastAlert2 did not run its rule:\n{self.proc.tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()
            self.proc = None

    def close(self) -> None:
        self.stop()
        self.shim.stop()


def _trial(faults: FaultLog, hook: Webhook, marker: str, timeout: float) -> dict:
    t0 = faults.append_fault(marker)
    got = hook.wait({"faultwarden", "elastalert"}, marker, timeout)
    return {"marker": marker, "t0": t0, **{k: (None if v is None else v - t0) for k, v in got.items()}}


def run(work: Path, node: Node, trials_slow: int = 5, trials_fast: int = 30, slow_window_s: float = 120,
        during_slow_phase=None) -> dict:
    work = work / "detection"
    work.mkdir(parents=True, exist_ok=True)
    hook = Webhook()
    faults = FaultLog(work / "logs" / "train.log")
    fw = start_faultwarden(work, node, hook, work / "logs")
    ea = None
    try:
        # Warm-up: faultwarden up, the index and its template created, the whole path working.
        for i in range(2):
            marker = f"bench-warmup-{i}"
            t0 = faults.append_fault(marker)
            got = hook.wait({"faultwarden"}, marker, 120)
            if got["faultwarden"] is None:
                raise RuntimeError(f"faultwarden did not notify the warm-up fault:\n{fw.tail()}")
            log(f"detection warm-up {i}: faultwarden notified after {got['faultwarden'] - t0:.3f} s")
        ea = ElastAlert(work, node, hook)

        log("detection: ElastAlert2 at run_every 1 minute")
        ea.start("{minutes: 1}", "elastalert-1m")
        background = [threading.Thread(target=f, daemon=True) for f in (during_slow_phase or [])]
        for t in background:
            t.start()
        slow: list[dict] = []
        lock = threading.Lock()
        threads = []
        began = time.monotonic()
        spacing = slow_window_s / trials_slow
        for k in range(trials_slow):
            at = began + k * spacing + RNG.uniform(0, spacing)
            time.sleep(max(0.0, at - time.monotonic()))
            marker = f"bench-trial-s{k:02d}"
            t0 = faults.append_fault(marker)

            def wait(marker=marker, t0=t0):
                got = hook.wait({"faultwarden", "elastalert"}, marker, 200)
                with lock:
                    slow.append({"marker": marker, **{s: None if v is None else v - t0 for s, v in got.items()}})
            threads.append(threading.Thread(target=wait))
            threads[-1].start()
        for t in threads:
            t.join()
        for t in background:
            t.join()
        for r in sorted(slow, key=lambda r: r["marker"]):
            log(f"  {r['marker']}: faultwarden {fmt(r['faultwarden'], 3)} s, ElastAlert2 {fmt(r['elastalert'], 1)} s")
        ea.stop()

        log("detection: ElastAlert2 at run_every 1 second")
        ea.start("{seconds: 1}", "elastalert-1s")
        fast = []
        for k in range(trials_fast):
            fast.append(_trial(faults, hook, f"bench-trial-f{k:02d}", 60))
            r = fast[-1]
            log(f"  {r['marker']}: faultwarden {fmt(r['faultwarden'], 3)} s, ElastAlert2 {fmt(r['elastalert'], 2)} s")
            time.sleep(RNG.uniform(0, 1))
        ea_version = ea.version
    finally:
        if ea:
            ea.close()
        fw_usage = fw.stop()
        faults.close()
        hook.close()
        for prefix in (PREFIX + "-", "fwbench_elastalert", "fwbench-idle-"):  # leave the node as found
            node.delete_prefix(prefix)
    fw_all = [r["faultwarden"] for r in slow + fast]
    return {
        "elastalert_version": ea_version,
        "slow": slow, "fast": fast,
        "faultwarden": _stats(fw_all),
        "elastalert_1m": _stats([r["elastalert"] for r in slow]),
        "elastalert_1s": _stats([r["elastalert"] for r in fast]),
        "faultwarden_service_cpu_s": fw_usage.cpu_s, "faultwarden_service_peak_rss_mb": fw_usage.peak_rss_mb,
    }


def _stats(values: list[float | None]) -> dict:
    got = [v for v in values if v is not None]
    return {"trials": len(values), "missed": len(values) - len(got), "p50": percentile(got, 50),
            "p99": percentile(got, 99), **{k: v for k, v in spread(got).items() if k in ("min", "max")}}


def table(res: dict) -> list[str]:
    fw = res["faultwarden"]
    rows = [("faultwarden service mode (tail → rules → webhook)", fw),
            (f"ElastAlert2 {res['elastalert_version']}, `run_every: {{minutes: 1}}` (its documented default)",
             res["elastalert_1m"]),
            (f"ElastAlert2 {res['elastalert_version']}, `run_every: {{seconds: 1}}`", res["elastalert_1s"])]
    out = ["| detector | trials | p50 s | p99 s | min–max s | p50 vs faultwarden | p99 vs faultwarden |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in rows:
        missed = f" ({s['missed']} missed)" if s["missed"] else ""
        out.append(f"| {name} | {s['trials']}{missed} | {fmt(s['p50'], 3)} | {fmt(s['p99'], 3)} | "
                   f"{fmt(s['min'], 3)}–{fmt(s['max'], 3)} | "
                   f"{'1x' if s is fw else ratio(s['p50'], fw['p50'], 0)} | "
                   f"{'1x' if s is fw else ratio(s['p99'], fw['p99'], 0)} |")
    return out


def verdict(res: dict) -> float | None:
    fw, ea = res["faultwarden"]["p99"], res["elastalert_1s"]["p99"]
    return ea / fw if fw and ea else None
