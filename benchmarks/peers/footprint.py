"""Comparison 4: what faultwarden costs when nothing happens, and how fast its CLI answers.

- Idle daemon: `faultwarden run --config F` in service mode over 100 log files (each with a few
  lines of history, already read and shipped during a warm-up of WARMUP_S), Elasticsearch
  configured, no traffic. Over the next 60 s: RSS sampled each second (psutil), CPU seconds
  used (the process's own, /proc), open files; torch is "imported" if any of its shared
  libraries or modules is mapped into the process (/proc/PID/maps: `import torch` always maps
  torch/_C and libtorch), and the same check for the other heavy libraries.
- `faultwarden --help`: wall time of the whole command (interpreter start to exit), median of
  10 runs after 3 warm-up runs, with hyperfine (no shell in between) where installed, else
  timed subprocess runs.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from common import FAULTWARDEN, Child, ecs_line, fmt, log, spread
from node import Node

FILES = 100
WARMUP_S = 15
IDLE_S = 60
HEAVY = {"torch": "/torch/", "transformers": "/transformers/", "sklearn": "/sklearn/", "numpy": "/numpy/"}


def idle(work: Path, node: Node, seconds: int = IDLE_S, result: dict | None = None) -> dict:
    import psutil

    work = work / "footprint"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for i in range(FILES):
        with open(logs / f"job-{i:03d}.log", "w") as fh:
            for k in range(5):
                fh.write(ecs_line(now - 60 + k, "info", "train step", f"idle-{i:03d}", ',"ml":{"step":%d}' % k))
    cfg = work / "faultwarden.yaml"
    cfg.write_text(json.dumps({
        "sources": [{"paths": [str(logs / "*.log")]}],
        "elasticsearch": {"hosts": [node.url], "index_prefix": "fwbench-idle"},
        "state_dir": str(work / "state"), "logging": {"level": "warning", "format": "json"},
    }))
    child = Child([str(FAULTWARDEN), "run", "--config", str(cfg)], work, "idle-daemon")
    try:
        time.sleep(WARMUP_S)
        if not child.alive():
            raise RuntimeError(f"the idle daemon exited:\n{child.tail()}")
        proc = psutil.Process(child.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        rss, began = [], time.monotonic()
        while time.monotonic() - began < seconds:
            rss.append(proc.memory_info().rss / 2**20)
            time.sleep(1)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        elapsed = time.monotonic() - began
        maps = Path(f"/proc/{child.pid}/maps").read_text()
        loaded = {name: marker in maps for name, marker in HEAVY.items()}
        open_files = len(proc.open_files())
        threads = proc.num_threads()
    finally:
        usage = child.stop()
    out = {"files": FILES, "seconds": elapsed, "rss_mb": spread(rss), "cpu_s": cpu, "cpu_pct": 100 * cpu / elapsed,
           "loaded": loaded, "open_files": open_files, "threads": threads, "peak_rss_mb": usage.peak_rss_mb}
    log(f"footprint: idle daemon RSS {out['rss_mb']['median']:.0f} MB (max {out['rss_mb']['max']:.0f}), "
        f"{cpu:.2f} CPU s in {elapsed:.0f} s, torch mapped: {loaded['torch']}")
    if result is not None:
        result.update(out)
    return out


def help_time(work: Path, runs: int = 10) -> dict:
    cmd = [str(FAULTWARDEN), "--help"]
    if shutil.which("hyperfine"):
        export = work / "hyperfine-help.json"
        subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", str(export),
                        " ".join(cmd)], check=True, capture_output=True)
        times = json.loads(export.read_text())["results"][0]["times"]
        how = f"hyperfine -N, {runs} runs after 3 warm-up runs"
    else:
        for _ in range(3):
            subprocess.run(cmd, capture_output=True, check=True)
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times.append(time.perf_counter() - began)
        how = f"timed subprocess runs, {runs} after 3 warm-up runs"
    out = {"wall_s": spread(times), "how": how}
    log(f"footprint: faultwarden --help {out['wall_s']['median']:.3f} s median ({how})")
    return out


def table(idle_res: dict, help_res: dict) -> list[str]:
    heavy = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in idle_res["loaded"].items())
    r, h = idle_res["rss_mb"], help_res["wall_s"]
    return [
        "| figure | value | target |",
        "|---|---:|---|",
        f"| idle daemon RSS, {idle_res['files']} tailed files, no traffic (median of 1 s samples over "
        f"{idle_res['seconds']:.0f} s; min–max) | {fmt(r['median'], 1)} MB ({fmt(r['min'], 1)}–{fmt(r['max'], 1)}) "
        f"| < 120 MB |",
        f"| idle daemon peak RSS since start (ru_maxrss, includes start-up and the first read of the "
        f"100 files) | {fmt(idle_res['peak_rss_mb'], 1)} MB | |",
        f"| idle daemon CPU over those {idle_res['seconds']:.0f} s | {fmt(idle_res['cpu_s'], 2)} CPU s "
        f"({fmt(idle_res['cpu_pct'], 2)} % of one core) | |",
        f"| open files / threads of the idle daemon | {idle_res['open_files']} / {idle_res['threads']} | |",
        f"| heavy libraries mapped into the idle daemon (/proc/PID/maps) | {heavy} | no torch |",
        f"| `faultwarden --help` wall time ({help_res['how']}) | {fmt(h['median'], 3)} s "
        f"({fmt(h['min'], 3)}–{fmt(h['max'], 3)}) | < 0.3 s |",
    ]
