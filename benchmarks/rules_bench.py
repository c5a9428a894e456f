"""What the default rule pack costs per event, beside what parsing the same lines costs.

    python benchmarks/rules_bench.py [--events N] [--repeat R]

The input is one node's day as faultwarden tails it: a training run (ECS JSON step lines from
`faultwarden.model`, one per rank; the HF Trainer's dict lines; per-rank step times), an
inference service (request lines with latencies, uvicorn access lines), and the text around
them (HF and torchrun INFO lines, NCCL INFO, warnings, a few errors, a rare traceback), at 200
lines a second. Mostly healthy, as real logs are; what fires, fires as it would live.

Times are CPU time of this process (the machine is shared: wall time would measure the
neighbours), the best of R rounds, divided by the number of events. Parsing is the real
parser (`faultwarden.daemon.parse.Parser`, as the daemon and diagnose run it); rules are the
whole default pack in one `RuleEngine`, events parsed beforehand. Not a timed test: it prints.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

from faultwarden.daemon.parse import Parser
from faultwarden.detectors.rules import RuleEngine, RuleSet

START = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
LINE_S = 0.005  # 200 lines a second
TEXT = [
    "[INFO|trainer.py:3503] {t} >> Saving model checkpoint to /ckpt/run-42/checkpoint-{n}",
    "{t} - data.loader - INFO - shard {n} opened, 2048 samples",
    "gpu-node-1:48213:48213 [0] NCCL INFO Channel 0{r}/32 : 0[0] -> 1[1] via P2P/IPC",
    "{t} - api.server - WARNING - slow client {n}, dropping keep-alive",
    "/usr/local/lib/python3.11/site-packages/torch/utils/checkpoint.py:464: UserWarning: torch.utils.checkpoint: "
    "the use_reentrant parameter should be passed explicitly.",
    "Token indices sequence length is longer than the specified maximum sequence length for this model "
    "({n} > 2048). Running this sequence through the model will result in indexing errors",
]
RARE = [
    "{t} - api.server - ERROR - upstream timed out after 30s (request {n})",
    "[{t}] [INFO] [logging.py:96:log_dist] [Rank 0] Overflow detected. Skipping step. Attempted loss scale: 65536, "
    "reducing to 32768",
]
TRACEBACK = """Traceback (most recent call last):
  File "/workspace/train.py", line 212, in <module>
    loss.backward()
RuntimeError: some unrelated error {n}"""


def lines(count: int, seed: int = 1) -> list[str]:
    rnd = random.Random(seed)
    out: list[str] = []
    step = 0
    while len(out) < count:
        now = START + timedelta(seconds=LINE_S * len(out))
        iso = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        t = now.strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        r = rnd.random()
        if r < 0.40:  # the instrumentation: one line per rank and logging step
            step += 1
            rank = step % 8
            step_time = rnd.gauss(1.0, 0.02)
            out.append(json.dumps({
                "@timestamp": iso, "log.level": "info", "message": f"step {step} loss={2.3 - step * 1e-6:.4f}",
                "log": {"logger": "faultwarden.model"}, "service": {"name": "train"}, "host": {"name": "gpu-node-1"},
                "labels": {"run_id": "run-42"}, "event": {"action": "train-step"},
                "ml": {"step": step // 8, "loss": round(2.3 - step * 1e-6 + rnd.gauss(0, 0.03), 4),
                       "grad_norm": round(rnd.uniform(0.8, 1.6), 4), "learning_rate": 3e-4,
                       "step_time_s": round(step_time, 4), "samples_per_s": round(64 / step_time, 2),
                       "tokens_per_s": round(131072 / step_time, 1), "rank": rank, "world_size": 8}},
                separators=(",", ":")))
        elif r < 0.50:  # the HF Trainer's own line on rank 0
            out.append("{" + f"'loss': {2.3 + rnd.uniform(-0.05, 0.05):.4f}, 'grad_norm': {rnd.uniform(0.8, 1.6):.4f}, "
                       f"'learning_rate': 2e-05, 'epoch': {step / 1e5:.4f}" + "}")
        elif r < 0.75:  # an inference service's request lines
            latency = rnd.lognormvariate(4.9, 0.35)
            out.append(json.dumps({"@timestamp": iso, "log.level": "info", "message": "POST /v1/generate 200",
                                   "service": {"name": "llm-api"}, "http": {"response": {"status_code": 200}},
                                   "ml": {"latency_ms": round(latency, 1)}}, separators=(",", ":")))
        elif r < 0.80:
            out.append(f'INFO:     10.0.{rnd.randint(0, 9)}.{rnd.randint(2, 250)}:{rnd.randint(30000, 65000)} - '
                       f'"POST /v1/completions HTTP/1.1" 200 OK')
        elif r < 0.9998:
            out.append(rnd.choice(TEXT).format(n=step, t=t, r=step % 10))
        elif r < 0.99995:
            out.append(rnd.choice(RARE).format(n=step, t=t))
        else:
            out.extend(TRACEBACK.format(n=step).splitlines())
    return out[:count]


def parse(text: list[str]) -> list[dict]:
    """The lines through the real parser, each dated (like a live read) where it has no time."""
    parser = Parser(None, host="bench-host")
    events: list[dict] = []
    offset = 0
    start = START.timestamp()
    for n, line in enumerate(text, 1):
        events.extend(parser.feed(line, path="bench.log", offset=offset, line_no=n, now=start + n * LINE_S))
        offset += len(line) + 1
    events.extend(parser.flush())
    return events


def kind(ev: dict) -> str:
    if "ml.latency_ms" in ev:
        return "request lines (JSON)"
    if "ml.step_time_s" in ev:
        return "step lines (ECS JSON)"
    if "ml.loss" in ev:
        return "HF Trainer dict lines"
    return "text lines"


def best_cpu(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    text = lines(args.events)
    ruleset = RuleSet.load([])

    parse_s, events = best_cpu(lambda: parse(text), args.repeat)

    def run_rules(evs=events):
        engine = RuleEngine(ruleset)
        return Counter(f.rule for ev in evs for f in engine.observe(ev))

    rules_s, findings = best_cpu(run_rules, args.repeat)
    n = len(events)
    print(f"{len(text):,} lines → {n:,} events; {len(ruleset.rules)} rules (the full default pack); "
          f"CPU time, best of {args.repeat}")
    print(f"  parse  {parse_s / n * 1e6:6.2f} µs/event  ({n / parse_s:,.0f} events/s)")
    print(f"  rules  {rules_s / n * 1e6:6.2f} µs/event  ({n / rules_s:,.0f} events/s)  "
          f"target < 20 µs: {'met' if rules_s / n * 1e6 < 20 else 'MISSED'}")
    print(f"  findings: {dict(findings.most_common())}")
    by_kind: dict[str, list[dict]] = {}
    for ev in events:
        by_kind.setdefault(kind(ev), []).append(ev)
    print("  rules by kind of line (each kind alone through a fresh engine):")
    for name, evs in sorted(by_kind.items()):
        seconds, _ = best_cpu(lambda evs=evs: run_rules(evs), args.repeat)
        print(f"    {name:24} {len(evs) / n:5.1%} of events  {seconds / len(evs) * 1e6:6.2f} µs/event")


if __name__ == "__main__":
    main()
