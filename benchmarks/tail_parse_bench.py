"""How fast faultwarden tails and parses a log file (issue #4), next to the ceiling.

Run:  /root/.cache/faultwarden/venv/bin/python benchmarks/tail_parse_bench.py [--lines 1000000]
          [--repeat 2] [--keep DIR] [--profile]

It writes a mixed training log of --lines lines into a temporary folder: ~60% JSON (ECS lines
shaped as ecs-logging writes them, and structlog JSONRenderer lines), ~15% HF Trainer dict lines,
~20% plain text (Python logging headers, glog/c10d lines, NCCL INFO, tqdm bars) and ~5% the
lines of Python tracebacks. Then, in CPU seconds of this process (the machine is shared: CPU time
is what one core spends, wall time is printed beside it), best of --repeat runs:

- tail+parse: the real `Tailer` over the file (a fresh state dir, detection only) and every line
  it hands out fed to the real `Parser`, the way the daemon does it;
- tail alone: the same Tailer, lines counted and dropped (where the time goes);
- the ceiling: the file read line by line, lines starting with `{` through `orjson.loads` (the
  HF dict lines among them fail fast), the other lines skipped by that first-character check.

The target is 100k lines per CPU second for tail+parse. --profile prints the hottest functions
of one tail+parse run.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import orjson

from faultwarden.daemon import logs
from faultwarden.daemon.config import Source
from faultwarden.daemon.parse import Parser
from faultwarden.daemon.tail import Tailer

TARGET = 100_000

_ECS = ('{{"@timestamp":"2024-05-01T12:{m:02d}:{s:02d}.{ms:03d}Z","log.level":"info","message":"train step",'
        '"ecs.version":"1.6.0","labels":{{"run_id":"run-1"}},"log":{{"logger":"trainer","origin":{{"file":'
        '{{"line":88,"name":"train.py"}},"function":"train"}},"original":"train step"}},"ml":{{"grad_norm":{g},'
        '"learning_rate":2e-05,"loss":{loss},"step":{step},"step_time_s":{t}}},"process":{{"name":"MainProcess",'
        '"pid":4242,"thread":{{"id":140512,"name":"MainThread"}}}}}}')
_STRUCTLOG = ('{{"loss": {loss}, "step": {step}, "tokens_per_s": {tps}, "event": "step done", "level": "info", '
              '"logger": "trainer", "timestamp": "2024-05-01T12:{m:02d}:{s:02d}.{us:06d}Z"}}')
_HF = "{{'loss': {loss}, 'grad_norm': {g}, 'learning_rate': 2e-05, 'epoch': {epoch}}}"
_TEXT = [
    "2024-05-01 12:{m:02d}:{s:02d},{ms:03d} - trainer - INFO - saving checkpoint to /ckpt/step-{step}",
    "[2024-05-01 12:{m:02d}:{s:02d},{ms:03d}] [INFO] [logging.py:96:log_dist] [Rank 0] step={step}, skipped=0, lr=[2e-05]",
    "gpu-node-1:4242:4300 [0] NCCL INFO Channel 00/02 :    0   1   2   3",
    "[W socket.cpp:663] [c10d] The client socket has failed to connect to [localhost]:29500",
    " 45%|████▌     | {step}/100000 [00:10<00:12, 44.1it/s, loss={loss}]",
    "WARNING:root:slow data loader: batch {step} took 2.1s",
]
_TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "/workspace/train.py", line 120, in <module>',
    "    main()",
    '  File "/workspace/train.py", line 98, in main',
    "    loss.backward()",
    "RuntimeError: CUDA error: an illegal memory access was encountered",
]


def write_log(path: Path, total: int, seed: int = 1) -> dict[str, int]:
    """The mixed log; returns how many lines of each kind it holds."""
    rng = random.Random(seed)
    kinds = {"ecs json": 0, "structlog json": 0, "hf dict": 0, "text": 0, "traceback": 0}
    out: list[str] = []
    step = 0
    while len(out) < total:
        step += 1
        m, s, ms = step // 60000 % 60, step // 1000 % 60, step % 1000
        loss = round(2.5 / (1 + step / 5000) + rng.random() * 0.05, 5)
        roll = rng.random()
        if roll < 0.40:
            out.append(_ECS.format(m=m, s=s, ms=ms, g=round(rng.uniform(0.5, 2), 4), loss=loss, step=step,
                                   t=round(rng.uniform(0.2, 0.3), 4)))
            kinds["ecs json"] += 1
        elif roll < 0.60:
            out.append(_STRUCTLOG.format(loss=loss, step=step, tps=rng.randrange(9000, 11000), m=m, s=s,
                                         us=ms * 1000))
            kinds["structlog json"] += 1
        elif roll < 0.75:
            out.append(_HF.format(loss=loss, g=round(rng.random() * 3, 4), epoch=round(step / 1000, 2)))
            kinds["hf dict"] += 1
        elif roll < 0.992:
            out.append(rng.choice(_TEXT).format(m=m, s=s, ms=ms, step=step, loss=loss))
            kinds["text"] += 1
        else:
            out.extend(_TRACEBACK)
            kinds["traceback"] += len(_TRACEBACK)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out))
        fh.write("\n")
    kinds["total"] = len(out)
    return kinds


def _tail(path: Path, state: Path, total: int, feed) -> tuple[float, float, int]:
    """CPU and wall seconds to hand out (and `feed`) every line; the events fed back."""
    source = Source(paths=[str(path)])
    events = 0
    with Tailer([source], state, max_unshipped_bytes=0, poll_s=1.0) as t:
        cpu, wall = time.process_time(), time.perf_counter()
        seen = 0
        while seen < total:
            lines = t.read(5.0)
            if not lines:
                raise SystemExit(f"the tailer stopped at {seen} of {total} lines")
            seen += len(lines)
            events += feed(lines)
        events += feed(None)
        return time.process_time() - cpu, time.perf_counter() - wall, events


def tail_and_parse(path: Path, state: Path, total: int) -> tuple[float, float, int]:
    parser = Parser(Source(paths=[str(path)]), host="bench")
    parse = parser.feed

    def feed(lines) -> int:
        if lines is None:
            return len(parser.flush())
        now = time.time()
        n = 0
        for line in lines:
            n += len(parse(line.text, path=line.path, offset=line.offset, line_no=line.line_no, now=now))
        return n
    return _tail(path, state, total, feed)


def tail_only(path: Path, state: Path, total: int) -> tuple[float, float, int]:
    return _tail(path, state, total, lambda lines: 0 if lines is None else len(lines))


def ceiling(path: Path) -> tuple[float, float, int]:
    loads, error = orjson.loads, orjson.JSONDecodeError
    cpu, wall = time.process_time(), time.perf_counter()
    decoded = 0
    with open(path, "rb") as fh:
        for line in fh:
            if line[:1] == b"{":
                try:
                    loads(line)
                    decoded += 1
                except error:
                    pass
    return time.process_time() - cpu, time.perf_counter() - wall, decoded


def best(runs: int, fn, *args) -> tuple[float, float, int]:
    results = [fn(*args) for _ in range(runs)]
    return min(results, key=lambda r: r[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the best CPU time counts")
    ap.add_argument("--keep", type=Path, help="write the log here and keep it (default: a temp folder)")
    ap.add_argument("--profile", action="store_true", help="profile one tail+parse run")
    args = ap.parse_args(argv)
    logs.configure(level="warning")   # not the tailer's file_found lines

    work = args.keep or Path(tempfile.mkdtemp(prefix="fw-tail-parse-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "train.log"
    try:
        kinds = write_log(log, args.lines)
        total = kinds.pop("total")
        size = log.stat().st_size
        print(f"{total:,} lines, {size / 1e6:.0f} MB ({size / total:.0f} bytes/line): "
              + ", ".join(f"{n:,} {k}" for k, n in kinds.items()))
        runs = iter(range(1_000_000))

        def state() -> Path:
            return work / f"state-{next(runs)}"   # a fresh registry: the whole file from 0

        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(tail_and_parse, log, state(), total)
            report = io.StringIO()
            pstats.Stats(profile, stream=report).sort_stats("tottime").print_stats(25)
            print(report.getvalue())
        parsed = best(args.repeat, lambda: tail_and_parse(log, state(), total))
        tailed = best(args.repeat, lambda: tail_only(log, state(), total))
        top = best(args.repeat, ceiling, log)
        print(f"{'':34}{'lines/CPU-s':>14}{'CPU s':>9}{'wall s':>9}")
        for name, (cpu, wall, _) in (("tail+parse (Tailer → Parser)", parsed), ("tail alone", tailed),
                                     ("ceiling (read + orjson.loads)", top)):
            print(f"{name:34}{total / cpu:>14,.0f}{cpu:>9.2f}{wall:>9.2f}")
        rate = total / parsed[0]
        print(f"tail+parse: {parsed[2]:,} events; {rate / (total / top[0]):.2f} of the ceiling; "
              f"target {TARGET:,} lines/CPU-s: {'met' if rate >= TARGET else 'NOT met'}")
        return 0 if rate >= TARGET else 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
