"""What every comparison shares: the ML log they all read, process accounting, figures.

Standard library plus psutil/orjson (both in faultwarden's venv): the orchestration runs in that
venv, the peers run as their own processes.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).resolve().parent
VENV = Path(os.environ.get("FAULTWARDEN_VENV", Path.home() / ".cache/faultwarden/venv"))
EA_VENV = Path(os.environ.get("FAULTWARDEN_ELASTALERT_VENV", Path.home() / ".cache/faultwarden/elastalert-venv"))
FAULTWARDEN = VENV / "bin/faultwarden"

# One day's worth of time for the whole log: faultwarden picks a daily index from each event's
# own time, so a log spanning several days would give it several shards to write in parallel
# and the peers only one. 1M lines x 50 ms = 13.9 h, all on 2026-01-05 (UTC).
LOG_START = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
LOG_STEP_S = 0.05
OOM = ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total "
       "capacity of 79.15 GiB of which 1.21 GiB is free.")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def ecs_line(ts: float, level: str, message: str, run_id: str, extra: str = "", pid: int = 4242) -> str:
    """One line exactly as Python's ecs-logging StdlibFormatter writes it (dotted `log.level`
    at the top, the rest nested), `extra` being the JSON members of the record's own fields."""
    return ('{"@timestamp":"%s","log.level":"%s","message":%s,"ecs.version":"1.6.0",'
            '"labels":{"run_id":"%s"},"log":{"logger":"trainer","origin":{"file":{"line":212,'
            '"name":"train.py"},"function":"training_step"}}%s,'
            '"process":{"name":"MainProcess","pid":%d},"service":{"name":"llm-pretrain"},"host":{"name":"gpu-node-7"}}\n'
            % (iso(ts), level, json.dumps(message), run_id, extra, pid))


def write_ml_log(path: Path, lines: int, seed: int = 7) -> dict:
    """A training job's ECS JSON log: a step record per line with the job's numbers under ml.*,
    an eval or checkpoint record now and then, a few warnings, and a handful of real faults
    (NaN losses, a loss spike, a CUDA OOM) so that `diagnose` has something to find.
    Deterministic for a seed; ~520 bytes a line."""
    rnd = random.Random(seed)
    faults = {lines // 4: "nan", lines // 2: "oom", (3 * lines) // 4: "spike"}
    with open(path, "w", buffering=1 << 20) as fh:
        for i in range(lines):
            ts = LOG_START + i * LOG_STEP_S
            kind = faults.get(i)
            if kind == "oom":
                fh.write(ecs_line(ts, "error", OOM, "run-1",
                                  ',"error":{"type":"torch.OutOfMemoryError","message":"CUDA out of memory"}'))
                continue
            if i % 997 == 0:
                fh.write(ecs_line(ts, "info", f"Saving model checkpoint to /ckpt/checkpoint-{i}", "run-1",
                                  ',"ml":{"checkpoint":{"path":"/ckpt/checkpoint-%d","step":%d}}' % (i, i)))
                continue
            if i % 1499 == 0:
                fh.write(ecs_line(ts, "warning", "dataloader worker 3 is slow: 2.1 s for one batch", "run-1"))
                continue
            # a decaying loss curve with +-2 % step noise: no drift that a spike rule would call a fault
            loss = (0.3 + 2.2 * math.exp(-i / 200_000)) * (1 + rnd.uniform(-0.02, 0.02))
            value = "NaN" if kind == "nan" else f"{loss * (40 if kind == 'spike' else 1):.5f}"
            fh.write(ecs_line(ts, "info", "train step", "run-1",
                              ',"ml":{"step":%d,"epoch":%.4f,"loss":%s,"learning_rate":2e-05,"grad_norm":%.4f,'
                              '"step_time_s":%.4f,"tokens_per_s":%d,"samples_per_s":%.2f,"rank":0,"world_size":8,'
                              '"memory":{"rss_bytes":%d,"gpu_allocated_bytes":%d}}'
                              % (i, i / 20000, value, rnd.uniform(0.4, 2.0), rnd.uniform(0.2, 0.3),
                                 5100 + rnd.randint(0, 300), rnd.uniform(30, 34), 8_000_000_000 + rnd.randint(0, 1 << 20),
                                 60_000_000_000 + rnd.randint(0, 1 << 24))))
    # The NaN loss is written as a bare NaN token, as Python's json module writes it: not JSON,
    # and Elasticsearch refuses a document that carries it as is.
    return {"lines": lines, "bytes": path.stat().st_size, "faults": sorted(faults.values()),
            "nan_lines": 1}


# --- processes ---------------------------------------------------------------------------------

@dataclass
class Usage:
    """What a finished child process cost: wall seconds, CPU seconds (user+system, all its
    threads), peak RSS (the kernel's high-water mark, ru_maxrss)."""
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int


class Child:
    """A process this benchmark started, reaped with wait4 so its own rusage is exact.
    Its pid is written to WORK/pids/ so that the shell's trap can end it should we die."""

    def __init__(self, cmd: list[str], workdir: Path, name: str, env: dict | None = None,
                 stdout=None, stderr=None, cwd: Path | None = None):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        out = open(self.log_path, "ab")
        self.began = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=stdout or out, stderr=stderr or out,
                                     start_new_session=True, cwd=cwd)
        out.close()
        self.pidfile = workdir / "pids" / f"{name}.{self.proc.pid}"
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.write_text(str(self.proc.pid))
        self.usage: Usage | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """Still running? Asked with WNOWAIT, so the exit status (and its rusage) stays for wait()."""
        if self.usage is not None:
            return False
        try:
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def wait(self, timeout: float | None = None) -> Usage:
        """Reap it (waiting up to `timeout`, then killing its process group)."""
        if self.usage:
            return self.usage
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
            if pid == self.proc.pid:
                break
            if deadline is not None and time.monotonic() > deadline:
                self._signal(signal.SIGKILL)
                deadline = None
            time.sleep(0.02)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.usage = Usage(wall_s=time.perf_counter() - self.began, cpu_s=ru.ru_utime + ru.ru_stime,
                           peak_rss_mb=ru.ru_maxrss / 1024, returncode=self.proc.returncode)
        self.pidfile.unlink(missing_ok=True)
        return self.usage

    def stop(self, grace: float = 20) -> Usage:
        if self.alive():
            self._signal(signal.SIGTERM)
        return self.wait(grace)

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def tree_cpu_s(pid: int) -> float:
    """CPU seconds so far of a process and its descendants (psutil), for processes we do not reap."""
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for q in procs:
        try:
            t = q.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


# --- figures -----------------------------------------------------------------------------------

def spread(values: list[float]) -> dict:
    """median and min–max of a list (what every table cell shows)."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "n": len(vals)}


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: with 30 samples p99 is the largest one (no interpolation that
    would invent a value nobody measured)."""
    vals = sorted(values)
    if not vals:
        return None
    rank = max(1, -(-len(vals) * p // 100))  # ceil
    return vals[int(rank) - 1]


def fmt(v: float | None, digits: int = 0, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def cell(s: dict, digits: int = 0, unit: str = "") -> str:
    """'median (min–max)'."""
    if not s or s.get("median") is None:
        return "n/a"
    if s["n"] == 1:
        return fmt(s["median"], digits, unit)
    return f"{fmt(s['median'], digits, unit)} ({fmt(s['min'], digits)}–{fmt(s['max'], digits)})"


def ratio(a: float | None, b: float | None, digits: int = 2) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.{digits}f}x"


def http_json(url: str, method: str = "GET", body: dict | None = None, timeout: float = 60) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


def machine_info() -> dict:
    import platform

    load = os.getloadavg()
    mem = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_mb": mem, "load": [round(x, 2) for x in load],
            "kernel": platform.release(), "python": platform.python_version()}
