"""Comparison 3: offline diagnosis throughput over the same 1M-line log.

- faultwarden: `faultwarden diagnose --format json -o OUT LOG`, the whole command (interpreter
  start, imports, parse, rules, incidents, report), timed from spawn to exit;
- Drain3 template mining alone, over each line's `message` (peers/offline_peers.py drain3);
- a bare orjson parse loop (peers/offline_peers.py orjson), the floor for reading JSON lines.
The peers' figures time their loop only (no interpreter start-up): a stricter yardstick.
Each runs `rounds` times, one after another; lines/s is lines over wall seconds.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from common import FAULTWARDEN, PEERS, VENV, Child, cell, fmt, log, ratio, spread


def _peer(work: Path, what: str, logfile: Path, name: str, *extra: str) -> dict:
    child = Child([str(VENV / "bin/python"), str(PEERS / "offline_peers.py"), what, str(logfile), *extra], work,
                  name, stdout=subprocess.PIPE)
    out = child.proc.stdout.read().decode()
    usage = child.wait(timeout=1800)
    if usage.returncode:
        raise RuntimeError(f"{what} failed:\n{child.tail()}")
    res = json.loads(out.strip().splitlines()[-1])
    return {**res, "wall_s": res["seconds"], "peak_rss_mb": usage.peak_rss_mb}


def _faultwarden(work: Path, logfile: Path, name: str) -> dict:
    report = work / f"{name}.json"
    child = Child([str(FAULTWARDEN), "diagnose", "--format", "json", "-o", str(report), str(logfile)], work, name)
    usage = child.wait(timeout=1800)
    if usage.returncode not in (0, 1):
        raise RuntimeError(f"faultwarden diagnose failed ({usage.returncode}):\n{child.tail()}")
    doc = json.loads(report.read_text())
    return {"lines": doc["summary"]["lines"], "wall_s": usage.wall_s, "cpu_s": usage.cpu_s,
            "peak_rss_mb": usage.peak_rss_mb,
            "incidents": sorted(f"{i['fault']} (line {i['source'].get('line')})" for i in doc["incidents"])}


def run(work: Path, logfile: Path, rounds: int) -> dict:
    work = work / "diagnosis"
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {"faultwarden": [], "drain3": [], "orjson": []}
    for r in range(rounds):
        for name in runs:
            if name == "faultwarden":
                res = _faultwarden(work, logfile, f"diagnose-{r}")
            else:
                res = _peer(work, name, logfile, f"{name}-{r}")
            res["lines_per_s"] = res["lines"] / res["wall_s"]
            runs[name].append(res)
            log(f"diagnosis round {r + 1}/{rounds} {name}: {res['lines']} lines in {res['wall_s']:.1f} s = "
                f"{res['lines_per_s']:,.0f}/s, {res['cpu_s']:.1f} CPU s")
    raw = _peer(work, "drain3", logfile, "drain3-raw", "--raw", "--limit", "2000")
    raw["lines_per_s"] = raw["lines"] / raw["wall_s"]
    log(f"diagnosis: Drain3 on whole lines: {raw['lines_per_s']:,.0f} lines/s, {raw['templates']} templates "
        f"from {raw['lines']} lines")
    return {"rounds": rounds, "runs": runs, "drain3_raw_lines": raw,
            "summary": {n: {k: spread([x[k] for x in rs]) for k in ("lines_per_s", "wall_s", "cpu_s", "peak_rss_mb")}
                        for n, rs in runs.items()}}


def table(res: dict) -> list[str]:
    s = res["summary"]
    fw = s["faultwarden"]["lines_per_s"]["median"]
    first = res["runs"]
    label = {"faultwarden": "faultwarden `diagnose --format json` (parse, rules, incidents, report)",
             "drain3": f"Drain3 template mining alone, `message` field ({first['drain3'][0]['templates']} templates)",
             "orjson": "bare orjson parse loop"}
    out = ["| tool | lines/s | faultwarden vs it | wall s | CPU s | peak RSS MB | found |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for name in ("faultwarden", "drain3", "orjson"):
        v = s[name]
        found = {"faultwarden": ", ".join(first["faultwarden"][0]["incidents"]) or "nothing",
                 "drain3": "templates, no faults", "orjson": "—"}[name]
        out.append(f"| {label[name]} | {cell(v['lines_per_s'])} | "
                   f"{'1x' if name == 'faultwarden' else ratio(fw, v['lines_per_s']['median'])} | "
                   f"{cell(v['wall_s'], 1)} | {cell(v['cpu_s'], 1)} | {cell(v['peak_rss_mb'])} | {found} |")
    raw = res["drain3_raw_lines"]
    out.append(f"| Drain3 on whole JSON lines (first {raw['lines']:,} lines only) | {fmt(raw['lines_per_s'])} | "
               f"{ratio(fw, raw['lines_per_s'], 0)} | {fmt(raw['wall_s'], 1)} | {fmt(raw['cpu_s'], 1)} | "
               f"{fmt(raw['peak_rss_mb'])} | {raw['templates']:,} templates: one per line |")
    return out
