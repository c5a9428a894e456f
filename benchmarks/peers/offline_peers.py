"""The two offline peers of `faultwarden diagnose`, run as their own processes over a log file.

    offline_peers.py orjson FILE         a bare orjson parse loop: the floor any JSON-lines tool pays
    offline_peers.py drain3 FILE [--limit N] [--raw]
                                         Drain3 template mining alone (no rules, no incidents)

Drain3 mines templates from free text; on JSON lines the text is the `message` field (each
line is decoded with orjson to get it; a line that is not JSON is mined as it is). `--raw`
feeds it whole lines instead: JSON without spaces is one token per line, so every line becomes
its own template and the miner slows to a crawl (that is why `message` is the default; --limit
keeps such a run short). Prints one JSON line: lines, seconds and CPU seconds of the loop only.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def orjson_loop(path: str) -> dict:
    import orjson

    n = bad = 0
    with open(path, "rb") as fh:
        for line in fh:
            n += 1
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                bad += 1
    return {"lines": n, "not_json": bad}


def drain3_loop(path: str, limit: int | None, raw: bool) -> dict:
    import orjson
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    logging.disable(logging.INFO)  # drain3 logs every new cluster at INFO
    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            if limit is not None and n >= limit:
                break
            n += 1
            text = None
            if not raw:
                try:
                    doc = orjson.loads(line)
                    text = doc.get("message") if isinstance(doc, dict) else None
                except orjson.JSONDecodeError:
                    pass
            if not isinstance(text, str):
                text = line.decode("utf-8", "replace").rstrip("\n")
            miner.add_log_message(text)
    return {"lines": n, "templates": len(miner.drain.clusters)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["orjson", "drain3"])
    ap.add_argument("file")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--raw", action="store_true")
    args = ap.parse_args()
    began, cpu0 = time.perf_counter(), _cpu()
    res = orjson_loop(args.file) if args.what == "orjson" else drain3_loop(args.file, args.limit, args.raw)
    res.update(seconds=time.perf_counter() - began, cpu_s=_cpu() - cpu0)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
