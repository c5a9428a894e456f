"""How fast a fault line stops the job: from the line being written to SIGTERM reaching the job,
and to the job's exit.

    python benchmarks/recovery_bench.py [--trials 50] [--via stdout|events] [--torch] [--json FILE]

Each trial is one `run_supervised` (what `faultwarden run -- CMD` runs) with a fresh state dir,
the standard parser and the DEFAULT rule pack. The job (a `python -c` child; with --torch its
first attempt imports torch, so its exit includes torch's teardown) saves three checkpoints, then writes
a NaN loss line, to its stdout (`--via stdout`) or to its own event file `$FAULTWARDEN_LOG_PATH`
(`--via events`, as `faultwarden.model`'s logger does), noting the time just before the write
call. faultwarden must read the line, parse it, open the `nan-loss` incident and SIGTERM the
job's process group. The job's SIGTERM handler notes the time it ran and exits; faultwarden then
restores the newest healthy checkpoint and restarts it (no back-off here), and the second
attempt exits 0 at once.

All times are on the machine's one clock (time.time(), same host), from the fault line written:
  incident   the incident was opened (the line was read, parsed and matched)
  sigterm    the job's SIGTERM handler ran (the job's own clock)
  exited     faultwarden saw the job's exit (waitpid returned and its output was read to the end)
  running    the restarted job runs its first statement (the job's own clock)
Target: p99 of `sigterm` under 500 ms. Percentiles are nearest-rank: with 50 to 100 trials the
p99 is the slowest trial; read it as a bound, not a tail estimate.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from faultwarden.daemon import logs
from faultwarden.daemon.config import Config
from faultwarden.daemon.supervised import run_supervised

TARGET_MS = 500.0
JOB = r'''
import json, os, signal, sys, time, zipfile
ckpt, mark, via, use_torch = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
if os.environ["FAULTWARDEN_ATTEMPT"] != "1":
    open(mark + ".running", "w").write(repr(time.time()))
    sys.exit(0)
if use_torch:  # the first attempt only: it is the one stopped
    import torch
# Files opened up front, written with pwrite: the handler may run at any point after the fault
# line is out (torch's threads can take the signal, so it cannot be held back with a mask);
# either side writes what it knows, at offset 0.
written_fd = os.open(mark + ".written", os.O_WRONLY | os.O_CREAT)
term_fd = os.open(mark + ".sigterm", os.O_WRONLY | os.O_CREAT)
written = None
def on_term(signum, frame):
    os.pwrite(term_fd, repr(time.time()).encode(), 0)
    if written is not None:
        os.pwrite(written_fd, repr(written).encode(), 0)
    sys.exit(128 + signum)
signal.signal(signal.SIGTERM, on_term)
for step in (10, 20, 30):
    os.makedirs(f"{ckpt}/checkpoint-{step}", exist_ok=True)
    with zipfile.ZipFile(f"{ckpt}/checkpoint-{step}/model.pt", "w") as z:
        z.writestr("archive/data.pkl", b"x")
    print(json.dumps({"message": "train", "ml.step": step, "ml.loss": 1.0 / step}), flush=True)
time.sleep(0.2)  # let faultwarden take in the healthy lines first
fault = json.dumps({"message": "train", "ml.step": 31, "ml.loss": float("nan")}) + "\n"
out = open(os.environ["FAULTWARDEN_LOG_PATH"], "a") if via == "events" else sys.stdout
written = time.time()  # just before the write call: the write itself takes microseconds
out.write(fault)
out.flush()
os.pwrite(written_fd, repr(written).encode(), 0)
time.sleep(60)
'''
PHASES = ("incident", "sigterm", "exited", "running")


def trial(root: Path, via: str, use_torch: bool) -> dict[str, float]:
    config = Config.model_validate({
        "state_dir": str(root / "state"),
        "actions": {"restart": {"backoff_initial_s": 0, "backoff_max_s": 0, "grace_period_s": 10},
                    "restore": {"checkpoint_dirs": [str(root / "ckpt")]}},
    })
    seen: dict[str, dict] = {}

    def observer(what: str, details: dict) -> None:
        seen.setdefault(what, details)

    mark = root / "mark"
    cmd = [sys.executable, "-c", JOB, str(root / "ckpt"), str(mark), via, "1" if use_torch else "0"]
    status = run_supervised(config, cmd, dry_run=False, observer=observer)
    noted = {what: _read(Path(f"{mark}.{what}")) for what in ("written", "sigterm", "running")}
    if status != 0 or "stopped" not in seen or None in noted.values():
        log = "".join(p.read_text() for p in (root / "state").glob("runs/*/job.log"))[-2000:]
        raise RuntimeError(f"trial failed: exit {status}, noted {noted}, story {seen}\njob.log ends:\n{log}")
    written = noted["written"]
    return {"incident": seen["incident"]["t"] - written,
            "sigterm": noted["sigterm"] - written,
            "exited": seen["stopped"]["t"] - written,
            "running": noted["running"] - written}


def _read(path: Path) -> float | None:
    try:
        return float(path.read_text())
    except (OSError, ValueError):
        return None


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), -(-int(q * 100) * len(ordered) // 100)) - 1)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--via", choices=("stdout", "events"), default="stdout",
                   help="Where the job writes the fault line: its stdout, or its own event file.")
    p.add_argument("--torch", action="store_true", help="The job imports torch first (slow to start and to exit).")
    p.add_argument("--json", type=Path, help="Also write the figures here.")
    args = p.parse_args()
    logs.configure("error", "console")
    results = []
    for i in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="fw-recovery.") as tmp:
            results.append(trial(Path(tmp), args.via, args.torch))
        print(f"\rtrial {i + 1}/{args.trials}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    job = "python -c job" + (" with torch imported" if args.torch else "")
    print(f"fault line written to the job's {args.via} -> ..., {args.trials} trials, {job}")
    print(f"{'ms after the line':18} {'p50':>8} {'p99':>8} {'max':>8} {'mean':>8}")
    figures = {}
    for phase in PHASES:
        values = [r[phase] * 1000 for r in results]
        figures[phase] = {"p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99), "max_ms": max(values),
                          "mean_ms": statistics.fmean(values)}
        f = figures[phase]
        print(f"{phase:18} {f['p50_ms']:8.1f} {f['p99_ms']:8.1f} {f['max_ms']:8.1f} {f['mean_ms']:8.1f}")
    verdict = "met" if figures["sigterm"]["p99_ms"] < TARGET_MS else "MISSED"
    print(f"target p99 to SIGTERM < {TARGET_MS:.0f} ms: {verdict} ({figures['sigterm']['p99_ms']:.1f} ms)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"trials": args.trials, "via": args.via, "torch": args.torch,
                                         "figures": figures, "raw": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
