"""How fast a supervised job is back after a fault line, and how much of that is back-off.

    python benchmarks/recovery_bench.py [--trials 50] [--backoff-initial 0.5] [--json FILE]

Each trial is one `run_supervised` with a fresh state dir, the standard parser and the DEFAULT
rule pack. The job (a `python -c` child) saves three checkpoints, notes the time, prints a NaN
loss line and waits; faultwarden must read the line, open the `nan-loss` incident, stop the
job (SIGTERM to its group), choose and restore the newest healthy checkpoint, wait the
tenacity back-off and start the job again; the second attempt prints its first line and exits 0.

Phases, from the moment the job wrote the fault line (the job's own clock, same machine):
  detect    incident opened (the line was read, parsed and matched)
  stopped   the job's process group is gone
  restored  checkpoint chosen, newer ones quarantined
  restarted the new child process exists (after the back-off)
  running   the new attempt runs its first statement (the job's own clock)
`overhead` = running - back-off actually waited: what faultwarden itself costs. The back-off
floor is `--backoff-initial` (tenacity adds jitter of up to the same amount on the first restart).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from faultwarden.daemon import logs
from faultwarden.daemon.config import Config
from faultwarden.daemon.supervised import run_supervised

JOB = r'''
import json, os, sys, time, zipfile
ckpt, mark = sys.argv[1], sys.argv[2]
if os.environ["FAULTWARDEN_ATTEMPT"] != "1":
    open(mark + ".2", "w").write(repr(time.time()))
    print(json.dumps({"message": "resumed", "ml.step": 20}), flush=True)
    sys.exit(0)
for step in (10, 20, 30):
    os.makedirs(f"{ckpt}/checkpoint-{step}", exist_ok=True)
    with zipfile.ZipFile(f"{ckpt}/checkpoint-{step}/model.pt", "w") as z:
        z.writestr("archive/data.pkl", b"x")
    print(json.dumps({"message": "train", "ml.step": step, "ml.loss": 1.0 / step}), flush=True)
open(mark, "w").write(repr(time.time()))
print(json.dumps({"message": "train", "ml.step": 31, "ml.loss": float("nan")}), flush=True)
time.sleep(60)
'''
PHASES = ("detect", "stopped", "restored", "restarted", "running", "overhead")


def trial(root: Path, backoff: float) -> dict[str, float]:
    config = Config.model_validate({
        "state_dir": str(root / "state"),
        "actions": {"restart": {"backoff_initial_s": backoff, "backoff_max_s": max(backoff, 1.0),
                                "grace_period_s": 5},
                    "restore": {"checkpoint_dirs": [str(root / "ckpt")]}},
    })
    seen: dict[str, dict] = {}

    def observer(what: str, details: dict) -> None:
        seen.setdefault(what, details)

    mark = root / "mark"
    status = run_supervised(config, [sys.executable, "-c", JOB, str(root / "ckpt"), str(mark)],
                            dry_run=False, observer=observer)
    if status != 0 or "restarted" not in seen:
        raise RuntimeError(f"trial failed: exit {status}, story {list(seen)}")
    written = float(mark.read_text())
    out = {"detect": seen["incident"]["t"] - written, "stopped": seen["stopped"]["t"] - written,
           "restored": seen["restored"]["t"] - written, "restarted": seen["restarted"]["t"] - written,
           "running": float(Path(f"{mark}.2").read_text()) - written, "backoff": seen["restarted"]["delay_s"]}
    out["overhead"] = out["running"] - out["backoff"]
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--backoff-initial", type=float, default=0.5)
    p.add_argument("--json", type=Path, help="Also write the figures here.")
    args = p.parse_args()
    logs.configure("error", "console")
    results = []
    for i in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="fw-recovery.") as tmp:
            results.append(trial(Path(tmp), args.backoff_initial))
        print(f"\rtrial {i + 1}/{args.trials}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(f"fault line → job running again, {args.trials} trials, back-off floor {args.backoff_initial:.3f} s "
          f"(+ jitter up to {args.backoff_initial:.3f} s)")
    print(f"{'phase':10} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    figures = {}
    for phase in PHASES + ("backoff",):
        values = [r[phase] * 1000 for r in results]
        figures[phase] = {"p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99), "max_ms": max(values),
                          "mean_ms": statistics.fmean(values)}
        print(f"{phase:10} {figures[phase]['p50_ms']:9.1f} {figures[phase]['p99_ms']:9.1f} {figures[phase]['max_ms']:9.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"trials": args.trials, "backoff_initial_s": args.backoff_initial,
                                         "figures": figures, "raw": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
