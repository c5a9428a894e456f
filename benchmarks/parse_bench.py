"""How fast faultwarden's parser turns log lines into events, next to the ceiling.

Run:  python benchmarks/parse_bench.py [--lines N] [--repeat R]

It writes nothing: it generates a mixed training log in memory (ECS JSON lines from the real
ecs-logging formatter, HF Trainer dict lines, text lines with a header, tqdm bars, a few real
Python tracebacks), then times, in CPU seconds of this process (so the figure is per core and a
busy machine skews it less than wall time would), best of R runs:
- `Parser.feed` over every line (as bytes, the way the tailer hands them over), plus `flush`;
- a bare `orjson.loads` loop over the same lines (non-JSON lines caught), the ceiling no parser
  built on orjson can beat;
and the same two over the ECS JSON lines alone (the hot path). It prints lines/s and the ratio.

The parser alone; `tail_parse_bench.py` measures the daemon's whole input path (Tailer → Parser)
over a 1M-line file, the figure issue #4 asks for.
"""
from __future__ import annotations

import argparse
import io
import logging
import random
import sys
import time
import traceback as tb

import ecs_logging
import orjson

from faultwarden.daemon.parse import Parser


def _ecs_lines(count: int, rng: random.Random) -> list[bytes]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ecs_logging.StdlibFormatter())
    log = logging.getLogger("bench.trainer")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    for step in range(count):
        log.info("train step", extra={
            "ml.step": step, "ml.loss": round(2.5 / (1 + step / 500) + rng.random() * 0.05, 5),
            "ml.learning_rate": 2e-5, "ml.grad_norm": round(rng.uniform(0.5, 2), 4),
            "ml.step_time_s": round(rng.uniform(0.2, 0.3), 4), "labels.run_id": "run-1"})
    return [line.encode() + b"\n" for line in stream.getvalue().splitlines()]


def _traceback() -> list[bytes]:
    try:
        {}["missing"]
    except KeyError:
        try:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        except RuntimeError as e:
            text = "".join(tb.format_exception(e))
    return [line.encode() + b"\n" for line in text.splitlines()]


def mixed_log(total: int, seed: int = 1) -> tuple[list[bytes], list[bytes]]:
    """(all lines, the ECS JSON lines among them): ~85% ECS JSON, ~5% HF dicts, ~8% text,
    ~1% tqdm, a traceback every ~2000 lines."""
    rng = random.Random(seed)
    ecs = iter(_ecs_lines(total, rng))
    crash = _traceback()
    lines: list[bytes] = []
    ecs_only: list[bytes] = []
    step = 0
    while len(lines) < total:
        roll = rng.random()
        step += 1
        if roll < 0.85:
            line = next(ecs)
            ecs_only.append(line)
            lines.append(line)
        elif roll < 0.90:
            record = {"loss": round(rng.random(), 4), "grad_norm": round(rng.random() * 3, 4),
                      "learning_rate": 2e-05, "epoch": round(step / 1000, 2)}
            lines.append(f"{record}\n".encode())
        elif roll < 0.98:
            lines.append(f"2024-05-01 12:{step // 60 % 60:02d}:{step % 60:02d},{step % 1000:03d} - "
                         f"trainer - INFO - saving checkpoint to /ckpt/step-{step}\n".encode())
        elif roll < 0.9995:
            lines.append(f" 45%|████▌     | {step}/100000 [00:10<00:12, 44.1it/s]\n".encode())
        else:
            lines.extend(crash)
    return lines, ecs_only


def time_parser(lines: list[bytes], repeat: int) -> tuple[float, int]:
    best, events = float("inf"), 0
    for _ in range(repeat):
        parser = Parser(host="bench")
        feed = parser.feed
        events = 0
        offset = 0
        start = time.process_time()
        for number, line in enumerate(lines, 1):
            events += len(feed(line, path="/bench.log", offset=offset, line_no=number, now=1.0))
            offset += len(line)
        events += len(parser.flush())
        best = min(best, time.process_time() - start)
    return best, events


def time_orjson(lines: list[bytes], repeat: int) -> float:
    best = float("inf")
    loads, error = orjson.loads, orjson.JSONDecodeError
    for _ in range(repeat):
        start = time.process_time()
        for line in lines:
            try:
                loads(line)
            except error:
                pass
        best = min(best, time.process_time() - start)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000, help="lines in the generated log")
    ap.add_argument("--repeat", type=int, default=3, help="runs; the best one counts")
    args = ap.parse_args(argv)
    lines, ecs_only = mixed_log(args.lines)
    print(f"{len(lines)} lines ({len(ecs_only)} ECS JSON, "
          f"{sum(map(len, lines)) / len(lines):.0f} bytes/line average)")
    print(f"{'lines per CPU second':28}{'faultwarden':>14}{'orjson.loads':>14}{'ratio':>8}")
    for name, sample in (("mixed log", lines), ("ECS JSON lines only", ecs_only)):
        parsed, events = time_parser(sample, args.repeat)
        ceiling = time_orjson(sample, args.repeat)
        print(f"{name:28}{len(sample) / parsed:>12,.0f}/s{len(sample) / ceiling:>12,.0f}/s"
              f"{ceiling / parsed:>8.2f}   ({events} events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
