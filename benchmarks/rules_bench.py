"""Events per second through the default rule pack (the engine alone: events are parsed first).

    python benchmarks/rules_bench.py [--events N]

The input is a realistic mix for one training run and one inference service: HF Trainer metric
lines, text log lines, throughput and per-rank step-time records, request latencies, a few
warnings and errors, and one traceback per ten thousand lines; time advances 5 ms a line (200 lines/s). Not a timed test: it prints.
"""
from __future__ import annotations

import argparse
import random
import time
from datetime import datetime, timedelta, timezone

from faultwarden.daemon.rulecheck import parse_text
from faultwarden.detectors.rules import RuleEngine, RuleSet

TEXT = [
    "{t} - transformers.trainer - INFO - Saving model checkpoint to /ckpt/checkpoint-{n}",
    "{t} - data.loader - INFO - shard {n} opened, 2048 samples",
    "{t} - api.server - INFO - POST /v1/generate 200 in {n} ms",
    "gpu-node-1:48213:48213 [0] NCCL INFO Channel 0{n}/32 : 0[0] -> 1[1] via P2P/IPC",
    "{t} - api.server - WARNING - slow client {n}, dropping keep-alive",
    "{t} - api.server - ERROR - upstream timed out after 30s (request {n})",
]
START = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
TRACEBACK = """Traceback (most recent call last):
  File "/workspace/train.py", line 212, in <module>
    loss.backward()
RuntimeError: some unrelated error {n}"""


def lines(count: int, seed: int = 1) -> list[str]:
    rnd = random.Random(seed)
    out: list[str] = []
    step = 0
    while len(out) < count:
        step += 1
        r = rnd.random()
        if r < 0.35:
            out.append("{" + f"'loss': {2.3 - step * 1e-5 + rnd.uniform(-0.05, 0.05):.4f}, 'grad_norm': "
                       f"{rnd.uniform(0.8, 1.6):.4f}, 'learning_rate': 2e-05, 'epoch': {step / 1e4:.4f}" + "}")
        elif r < 0.45:
            out.append(f'{{"step": {step}, "samples_per_s": {rnd.uniform(800, 830):.1f}, '
                       f'"tokens_per_second": {rnd.uniform(48000, 51000):.0f}}}')
        elif r < 0.60:
            out.append(f'{{"rank": {step % 8}, "step": {step}, "step_time_s": {rnd.uniform(0.98, 1.05):.3f}}}')
        elif r < 0.75:
            out.append(f'{{"service": "llm-api", "message": "POST /v1/generate 200", '
                       f'"latency_ms": {rnd.uniform(60, 300):.1f}}}')
        elif r < 0.9999:
            t = (START + timedelta(milliseconds=5 * len(out))).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
            out.append(rnd.choice(TEXT).format(n=step, t=t))
        else:
            out.extend(TRACEBACK.format(n=step).splitlines())
    return out[:count]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    args = ap.parse_args()
    ruleset = RuleSet.load([])
    events = parse_text(((line, None) for line in lines(args.events)), "bench.log")
    engine = RuleEngine(ruleset)
    start = time.perf_counter()
    findings = sum(len(engine.observe(ev)) for ev in events)
    elapsed = time.perf_counter() - start
    print(f"{len(events):,} events through {len(ruleset.rules)} rules in {elapsed:.2f} s: "
          f"{len(events) / elapsed:,.0f} events/s ({findings} findings)")


if __name__ == "__main__":
    main()
