"""Comparison 1: shipping throughput, one JSON-lines log file into Elasticsearch.

Three contenders read the same file into the same node, one at a time, in rounds (the order
rotates each round, so a busy spell on the shared machine does not always hit the same one):

- faultwarden: `faultwarden ship --config F LOG`, the CLI users run; the clock runs from
  spawning the process to its exit, which it only does once Elasticsearch acknowledged every
  event. Index templates are installed before the clock (`ship --setup`).
- rsyslog: Debian's rsyslogd with imfile + mmjsonparse + omelasticsearch (bulk mode), run in
  the foreground with its own config and work dir (peers/rsyslog.conf.tmpl). It never exits by
  itself, so the clock stops when the index holds every document it can store (polled with
  _count every 0.2 s: up to one refresh interval, 1 s, lands on its side).
  Its documents go to `<prefix>-events-rsyslog`, which faultwarden's template covers: the same
  mappings and settings.
- raw ceiling: peers/raw_bulk.py sends faultwarden's own documents, parsed and serialized
  before the clock, with the client's parallel_bulk (4 threads, 1000 a request: the same four
  requests in flight and batch size faultwarden uses); only its bulk loop is timed.

CPU seconds and peak RSS are each process's own (wait4's rusage, all threads); Elasticsearch's
CPU seconds during the run are shown apart (psutil on the node's process tree).
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

from common import FAULTWARDEN, PEERS, VENV, Child, cell, log, ratio, spread
from node import Node, es_cpu_s

CONTENDERS = ("raw", "faultwarden", "rsyslog")
BATCH = 1000
WORKERS = 4
WARM_UP = 200_000


def fw_config(path: Path, node: Node, prefix: str, state: Path) -> Path:
    path.write_text(json.dumps({
        "elasticsearch": {"hosts": [node.url], "index_prefix": prefix, "batch_events": BATCH},
        "state_dir": str(state), "logging": {"level": "warning", "format": "json"},
    }))
    return path


def setup_templates(work: Path, node: Node, prefix: str) -> None:
    cfg = fw_config(work / f"{prefix}.setup.yaml", node, prefix, work / f"{prefix}.setup-state")
    subprocess.run([str(FAULTWARDEN), "ship", "--config", str(cfg), "--setup"], check=True,
                   capture_output=True, text=True)


def run_faultwarden(work: Path, node: Node, logfile: Path, prefix: str, expected: int) -> dict:
    cfg = fw_config(work / f"{prefix}.yaml", node, prefix, work / f"{prefix}.state")
    child = Child([str(FAULTWARDEN), "ship", "--config", str(cfg), str(logfile)], work, prefix,
                  stdout=subprocess.PIPE)
    out = child.proc.stdout.read().decode()
    usage = child.wait(timeout=3600)
    if usage.returncode != 0:
        raise RuntimeError(f"faultwarden ship failed ({usage.returncode}): {out}\n{child.tail()}")
    shipped = int(out.split(" shipped")[0].rsplit(" ", 1)[-1]) if " shipped" in out else 0
    node.refresh(f"{prefix}-events-*")
    return {"events": shipped, "stored": node.count(f"{prefix}-events-*"), "wall_s": usage.wall_s,
            "cpu_s": usage.cpu_s, "peak_rss_mb": usage.peak_rss_mb, "summary": out.strip()}


def run_rsyslog(work: Path, node: Node, logfile: Path, prefix: str, expected: int) -> dict:
    rdir = work / f"{prefix}.rsyslog"
    rdir.mkdir()
    index = f"{prefix}-events-rsyslog"
    conf = rdir / "rsyslog.conf"
    conf.write_text((PEERS / "rsyslog.conf.tmpl").read_text().format(
        workdir=rdir, log=logfile, port=node.url.rsplit(":", 1)[1], index=index, batch=BATCH, workers=WORKERS))
    child = Child(["rsyslogd", "-n", "-f", str(conf), "-i", str(rdir / "rsyslogd.pid")], work, prefix)
    last, last_change, stored = -1, time.monotonic(), 0
    try:
        while True:
            time.sleep(0.2)
            if not child.alive():
                raise RuntimeError(f"rsyslogd exited early:\n{child.tail()}")
            stored = node.count(index)
            refused = _refused(rdir / "es-errors.json")
            if stored + refused >= expected:
                break
            if stored != last:
                last, last_change = stored, time.monotonic()
            elif time.monotonic() - last_change > 120:
                raise RuntimeError(f"rsyslog stalled at {stored}/{expected} documents:\n{child.tail()}")
        wall = time.perf_counter() - child.began
    finally:
        usage = child.stop()
    return {"events": stored, "stored": stored, "refused": refused, "wall_s": wall, "cpu_s": usage.cpu_s,
            "peak_rss_mb": usage.peak_rss_mb}


def _refused(errors: Path) -> int:
    """Documents Elasticsearch refused for good, from omelasticsearch's errorFile (one JSON
    object per failed bulk request, with the reply's items)."""
    if not errors.exists():
        return 0
    text, n, pos = errors.read_text(errors="replace"), 0, 0
    decoder = json.JSONDecoder()
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return n
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:  # a half-written record: count it next time
            return n
        items = (obj.get("reply") or {}).get("items") or []
        n += sum(1 for it in items if next(iter(it.values()), {}).get("status", 200) >= 300)


def run_raw(work: Path, node: Node, docs: Path, prefix: str, expected: int, limit: int | None = None) -> dict:
    child = Child([str(VENV / "bin/python"), str(PEERS / "raw_bulk.py"), "send", "--docs", str(docs),
                   "--url", node.url, "--prefix", prefix, "--threads", str(WORKERS)]
                  + (["--limit", str(limit)] if limit else []), work, prefix, stdout=subprocess.PIPE)
    out = child.proc.stdout.read().decode()
    usage = child.wait(timeout=3600)
    if usage.returncode != 0:
        raise RuntimeError(f"raw bulk failed: {out}\n{child.tail()}")
    res = json.loads(out.strip().splitlines()[-1])
    node.refresh(f"{prefix}-events-*")
    return {"events": res["events"], "stored": node.count(f"{prefix}-events-*"), "wall_s": res["seconds"],
            "cpu_s": res["cpu_s"], "peak_rss_mb": usage.peak_rss_mb}


def prepare_raw(work: Path, logfile: Path) -> Path:
    docs = work / "raw-docs.tsv"
    subprocess.run([str(VENV / "bin/python"), str(PEERS / "raw_bulk.py"), "prepare", "--log", str(logfile),
                    "--out", str(docs)], check=True, capture_output=True)
    return docs


def run(work: Path, node: Node, logfile: Path, lines: int, refused_expected: int, rounds: int,
        deadline: float | None = None) -> dict:
    """`rounds` rounds, fewer when another would end past `deadline` (time.monotonic())."""
    work = work / "shipping"
    work.mkdir(parents=True, exist_ok=True)
    log("shipping: serializing the raw ceiling's documents (untimed)")
    docs = prepare_raw(work, logfile)
    # A fresh JVM indexes at well under half speed until its JIT has compiled the indexing
    # path: the first contender of round 1 would pay for that alone. 200,000 documents, untimed.
    log("shipping: warming the node up (200,000 documents, untimed)")
    warm = f"fwbench-warm-{uuid.uuid4().hex[:4]}"
    setup_templates(work, node, warm)
    run_raw(work, node, docs, warm, WARM_UP, limit=WARM_UP)
    node.delete_prefix(warm + "-")
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    note = ""
    first_round_began = time.monotonic()
    for r in range(rounds):
        if r and deadline is not None:
            round_s = (time.monotonic() - first_round_began) / r
            if time.monotonic() + round_s > deadline:
                note = (f"; {r} of the {rounds} planned: another round (~{round_s / 60:.0f} min at this "
                        "machine's load) would have pushed the whole run past its time budget")
                log(f"shipping: stopping after {r} round(s)")
                rounds = r
                break
        order = CONTENDERS[r % 3:] + CONTENDERS[:r % 3]
        for name in order:
            prefix = f"fwbench-{name[:3]}{r}-{uuid.uuid4().hex[:4]}"
            setup_templates(work, node, prefix)
            node.settle()
            es0 = es_cpu_s(node)
            if name == "faultwarden":
                res = run_faultwarden(work, node, logfile, prefix, lines)
            elif name == "rsyslog":
                res = run_rsyslog(work, node, logfile, prefix, lines)
            else:
                res = run_raw(work, node, docs, prefix, lines)
            es1 = es_cpu_s(node)
            res["es_cpu_s"] = None if es0 is None else es1 - es0
            res["events_per_s"] = res["events"] / res["wall_s"]
            runs[name].append(res)
            log(f"shipping round {r + 1}/{rounds} {name}: {res['events']} events in {res['wall_s']:.1f} s = "
                f"{res['events_per_s']:,.0f}/s, {res['cpu_s']:.1f} CPU s, {res['peak_rss_mb']:.0f} MB peak; "
                f"stored {res['stored']}")
            node.delete_prefix(prefix + "-")
    return {"lines": lines, "rounds": rounds, "rounds_note": note, "runs": runs, "refused_expected": refused_expected,
            "summary": {name: {k: spread([x[k] for x in rs if x.get(k) is not None])
                               for k in ("events_per_s", "wall_s", "cpu_s", "peak_rss_mb", "es_cpu_s", "stored")}
                        for name, rs in runs.items()}}


def table(res: dict) -> list[str]:
    s = res["summary"]
    fw, rs, raw = (s[n]["events_per_s"]["median"] for n in ("faultwarden", "rsyslog", "raw"))
    label = {"faultwarden": "faultwarden `ship`", "rsyslog": "rsyslog (imfile → omelasticsearch, bulk)",
             "raw": "raw bulk ceiling (pre-serialized, parallel_bulk ×4)"}
    out = ["| contender | events/s | vs rsyslog | vs raw ceiling | wall s | CPU s (its own) | peak RSS MB | "
           "Elasticsearch CPU s | documents stored |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("faultwarden", "rsyslog", "raw"):
        v = s[name]
        eps = v["events_per_s"]["median"]
        stored = sorted({x["stored"] for x in res["runs"][name]})
        out.append(f"| {label[name]} | {cell(v['events_per_s'])} | {ratio(eps, rs)} | {ratio(eps, raw)} | "
                   f"{cell(v['wall_s'], 1)} | {cell(v['cpu_s'], 1)} | {cell(v['peak_rss_mb'])} | "
                   f"{cell(v['es_cpu_s'], 1)} | {', '.join(f'{x:,}' for x in stored)} of {res['lines']:,} |")
    paired = {peer: spread([f["events_per_s"] / p["events_per_s"] for f, p in zip(res["runs"]["faultwarden"],
                                                                               res["runs"][peer])])
              for peer in ("rsyslog", "raw")}
    out += ["", "Paired within each round (the same spell of machine load): faultwarden / rsyslog "
                f"{cell(paired['rsyslog'], 2, 'x')}, faultwarden / raw ceiling {cell(paired['raw'], 2, 'x')} "
                "(median, min–max over the rounds)."]
    return out


def verdict(res: dict) -> dict:
    s = res["summary"]
    fw, rs, raw = (s[n]["events_per_s"]["median"] for n in ("faultwarden", "rsyslog", "raw"))
    return {"vs_rsyslog": fw / rs if rs else None, "vs_raw": fw / raw if raw else None}
