#!/usr/bin/env python3
"""Shipping throughput: a log file into Elasticsearch, faultwarden against the raw bulk ceiling.

    python benchmarks/ship_bench.py [--events 200000] [--es-url URL] [--repeat 2]

- faultwarden: the whole path a shipped line takes: read_file (parse) → ElasticsearchSink
  (documents, ids, batches, streaming_bulk, acks) → every event acknowledged.
- raw ceiling: the same documents, parsed and serialized BEFORE the clock starts, sent with
  `helpers.bulk` as `create` ops with the same ids into the same kind of index (same template),
  the same batch size. That is what the node can take from one Python client; faultwarden's
  target is >= 80 % of it.

Each run is a separate process, so peak RSS (ru_maxrss) is that run's own. The node: --es-url,
else FAULTWARDEN_TEST_ES_URL, else one started with scripts/es.py (and stopped after).
Prints a table and, last, one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1000


def write_log(path: Path, n: int) -> None:
    """A training log as Hugging Face / PyTorch jobs write it: JSON lines, a traceback now and then."""
    rnd = random.Random(7)
    with open(path, "w") as fh:
        for i in range(n):
            if i % 5000 == 4999:
                fh.write("Traceback (most recent call last):\n  File \"train.py\", line 88, in step\n"
                         "RuntimeError: CUDA error: an illegal memory access was encountered\n")
                continue
            loss = float("nan") if i % 10_000 == 1234 else round(2.5 / (1 + i / 1000) + rnd.random() * 0.05, 5)
            fh.write(json.dumps({"time": 1_767_225_600 + i * 0.5, "level": "info", "msg": "train step",
                                 "step": i, "loss": loss, "learning_rate": 2e-5, "grad_norm": rnd.random() * 3,
                                 "epoch": round(i / 20_000, 4), "tokens_per_s": 5100 + rnd.randint(0, 300)})
                     + "\n")


def settings(url: str, prefix: str):
    from faultwarden.daemon.config import Elasticsearch

    return Elasticsearch(hosts=[url], index_prefix=prefix, batch_events=BATCH, flush_interval_s=1.0,
                         max_in_flight_events=20_000)


def run_faultwarden(url: str, log: Path, prefix: str) -> dict:
    from faultwarden.daemon.parse import read_file
    from faultwarden.daemon.ship import ElasticsearchSink, file_identity

    with tempfile.TemporaryDirectory() as state:
        began = time.perf_counter()
        sink = ElasticsearchSink(settings(url, prefix), state_dir=state)
        file_id = file_identity(log)
        for event in read_file(str(log)):
            sink.submit(event, file_id)
        assert sink.close(timeout=3600), "not everything was delivered"
        seconds = time.perf_counter() - began
    return {"events": sink.stats.shipped, "seconds": seconds, "dead_lettered": sink.stats.dead_lettered}


def run_raw(url: str, log: Path, prefix: str) -> dict:
    from elasticsearch import helpers

    from faultwarden.daemon.parse import read_file
    from faultwarden.daemon.ship import file_identity, setup, to_document
    from faultwarden.daemon.ship.client import connect

    file_id = file_identity(log)
    docs = [to_document(e, prefix, file_id) for e in read_file(str(log))]  # before the clock
    actions = [{"_op_type": "create", "_index": d.index, "_id": d.id, "_source": d.body} for d in docs]
    client = connect(settings(url, prefix))
    setup(client, prefix)  # the sink does this inside its timed run; it is a few small requests
    began = time.perf_counter()
    ok, errors = helpers.bulk(client, actions, chunk_size=BATCH, max_chunk_bytes=100 << 20,
                              raise_on_error=False, stats_only=True)
    seconds = time.perf_counter() - began
    assert not errors, errors
    return {"events": ok, "seconds": seconds, "dead_lettered": 0}


def child(args) -> None:
    fn = run_faultwarden if args.phase == "faultwarden" else run_raw
    result = fn(args.es_url, Path(args.file), args.prefix)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(phase: str, url: str, log: Path) -> dict:
    prefix = f"fwbench-{phase[:3]}-{uuid.uuid4().hex[:6]}"
    cmd = [sys.executable, __file__, "--phase", phase, "--es-url", url, "--file", str(log), "--prefix", prefix]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    finally:
        from elasticsearch import Elasticsearch

        es = Elasticsearch(url, request_timeout=120)
        es.options(ignore_status=404).indices.delete(index=f"{prefix}-*")
        for t in ("events", "incidents"):
            es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-{t}")


def node_url(args) -> tuple[str, Path | None]:
    url = args.es_url or os.environ.get("FAULTWARDEN_TEST_ES_URL")
    if url:
        return url.rstrip("/"), None
    workdir = Path(tempfile.mkdtemp(prefix="faultwarden-bench-es."))
    done = subprocess.run([sys.executable, str(ROOT / "scripts/es.py"), "start", "--workdir", str(workdir)],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"could not start Elasticsearch: {done.stderr.strip()}")
    return done.stdout.strip(), workdir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each; the best counts")
    ap.add_argument("--es-url")
    ap.add_argument("--phase", choices=["faultwarden", "raw"], help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        return child(args)
    url, workdir = node_url(args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "train.log"
            write_log(log, args.events)
            runs: dict[str, list[dict]] = {"raw": [], "faultwarden": []}
            for _ in range(args.repeat):  # interleaved, so a busy spell hits both alike
                for phase in runs:
                    runs[phase].append(measure(phase, url, log))
    finally:
        if workdir:
            subprocess.run([sys.executable, str(ROOT / "scripts/es.py"), "stop", "--workdir", str(workdir)])
    best = {p: max(rs, key=lambda r: r["events"] / r["seconds"]) for p, rs in runs.items()}
    rate = {p: r["events"] / r["seconds"] for p, r in best.items()}
    print(f"{'':<12} {'events':>8} {'seconds':>8} {'events/s':>9} {'peak RSS MB':>12}")
    for p, r in best.items():
        print(f"{p:<12} {r['events']:>8} {r['seconds']:>8.2f} {rate[p]:>9.0f} {r['peak_rss_mb']:>12.0f}")
    ratio = rate["faultwarden"] / rate["raw"]
    print(f"faultwarden / raw bulk ceiling: {ratio:.0%} (target >= 80%)")
    print(json.dumps({"events": args.events, "raw_events_per_s": round(rate["raw"]),
                      "faultwarden_events_per_s": round(rate["faultwarden"]), "ratio": round(ratio, 3),
                      "raw_peak_rss_mb": round(best["raw"]["peak_rss_mb"]),
                      "faultwarden_peak_rss_mb": round(best["faultwarden"]["peak_rss_mb"]), "runs": runs}))


if __name__ == "__main__":
    main()
