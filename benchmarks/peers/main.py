"""benchmarks/run's Python half: start the node, run the four comparisons, write results.md.

Run through benchmarks/run (which installs the peers and cleans up after a crash); see
benchmarks/README.md. Every process it starts is its own child, recorded in WORK/pids/.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import detection  # noqa: E402
import diagnosis  # noqa: E402
import footprint  # noqa: E402
import shipping  # noqa: E402
from common import FAULTWARDEN, ROOT, fmt, log, machine_info, write_ml_log  # noqa: E402
from node import ES_VERSION, Node  # noqa: E402

COMPARISONS = ("shipping", "detection", "diagnosis", "footprint")
FULL = {"lines": 1_000_000, "ship_rounds": 3, "diag_rounds": 3, "trials_slow": 5, "trials_fast": 30,
        "slow_window_s": 120, "idle_s": 60, "budget_min": 28}
QUICK = {"lines": 100_000, "ship_rounds": 1, "diag_rounds": 1, "trials_slow": 2, "trials_fast": 5,
         "slow_window_s": 20, "idle_s": 15, "budget_min": 15}


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not installed"


def main() -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/run", description="faultwarden beside its peers; see benchmarks/README.md")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--quick", action="store_true", help="small sizes, one round (for development)")
    ap.add_argument("--es-url", help="use this Elasticsearch 8.x node instead of starting one")
    ap.add_argument("--only", default=",".join(COMPARISONS), help="comma-separated subset of " + ", ".join(COMPARISONS))
    ap.add_argument("--output", type=Path, default=ROOT / "benchmarks/results.md")
    ap.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                    help="only write the Markdown again from a run's results.json (same figures)")
    args = ap.parse_args()
    if args.render:
        doc = json.loads(args.render.read_text())
        args.output.write_text(render(doc["info"], doc["results"]))
        return 0
    if args.work is None:
        ap.error("--work is needed (benchmarks/run makes one)")
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    if bad := set(only) - set(COMPARISONS):
        ap.error(f"unknown comparison(s): {', '.join(sorted(bad))}")
    size = QUICK if args.quick else FULL
    # SIGTERM/SIGINT unwind through the finally blocks: every child stopped, the node too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    started_at = datetime.now(timezone.utc)
    info = {"machine_start": machine_info(), "size": size, "quick": args.quick, "only": only,
            "commit": _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
            "versions": {"faultwarden": _version([str(FAULTWARDEN), "version"]),
                         "rsyslog": " ".join(_version(["rsyslogd", "-v"]).split()[:2]), "hyperfine": _version(["hyperfine", "--version"])}}
    log(f"benchmarks: {'quick' if args.quick else 'full'} run in {args.work}: {', '.join(only)}")

    node_box: dict = {}

    def start_node():
        try:
            node_box["node"] = Node.given(args.es_url) if args.es_url else Node.start(args.work / "es", ES_VERSION)
        except BaseException as exc:  # reported by the main thread
            node_box["error"] = exc

    starter = threading.Thread(target=start_node)
    starter.start()  # the node boots while the log is written
    logfile = args.work / "ml.log"
    needs_log = {"shipping", "diagnosis"} & set(only)
    if needs_log:
        info["log"] = write_ml_log(logfile, size["lines"])
        log(f"log: {info['log']['lines']:,} lines, {info['log']['bytes'] / 2**20:.0f} MiB")
    starter.join()
    if "error" in node_box:
        raise node_box["error"]
    node: Node = node_box["node"]
    info["es_version"] = node.version
    results: dict = {}
    try:
        idle_box: dict = {}
        if "detection" in only:
            # The idle-footprint minute runs while ElastAlert2's 1-minute phase waits for its
            # schedule: the machine is otherwise quiet then, and it saves a minute.
            during = [lambda: footprint.idle(args.work, node, size["idle_s"], idle_box)] if "footprint" in only else []
            results["detection"] = detection.run(args.work, node, size["trials_slow"], size["trials_fast"],
                                                 size["slow_window_s"], during_slow_phase=during)
        if "diagnosis" in only:
            results["diagnosis"] = diagnosis.run(args.work, logfile, size["diag_rounds"])
        if "footprint" in only:
            if not idle_box:
                footprint.idle(args.work, node, size["idle_s"], idle_box)
            if not idle_box:
                raise RuntimeError("the idle footprint was not measured (see the log above)")
            results["footprint"] = {"idle": idle_box, "help": footprint.help_time(args.work)}
        if "shipping" in only:
            # Last, because its length is what the machine's load decides: rounds after the first
            # run only while the whole run stays within the budget (the README's 30 minutes).
            deadline = began + size["budget_min"] * 60
            results["shipping"] = shipping.run(args.work, node, logfile, size["lines"], info["log"]["nan_lines"],
                                               size["ship_rounds"], deadline=deadline)
    finally:
        node.stop()
    info["machine_end"] = machine_info()
    info["minutes"] = (time.monotonic() - began) / 60
    info["started_at"] = started_at.strftime("%Y-%m-%d %H:%M UTC")
    (args.work / "results.json").write_text(json.dumps({"info": info, "results": results}, indent=1, default=str))
    args.output.write_text(render(info, results))
    log(f"benchmarks: done in {info['minutes']:.1f} min; wrote {args.output} (raw figures: {args.work}/results.json)")
    return 0


def targets(results: dict) -> list[str]:
    out = ["| target (issue #10) | measured | met |", "|---|---:|:---:|"]

    def row(what, value, ok):
        out.append(f"| {what} | {value} | {'yes' if ok else '**no**'} |")

    if "shipping" in results:
        v = shipping.verdict(results["shipping"])
        row("shipping ≥ 1.0x rsyslog (events/s, medians)", f"{v['vs_rsyslog']:.2f}x", v["vs_rsyslog"] >= 1.0)
        row("shipping ≥ 80 % of the raw bulk ceiling", f"{v['vs_raw']:.0%}", v["vs_raw"] >= 0.8)
    if "detection" in results:
        d = results["detection"]
        x = detection.verdict(d)
        row(f"detection p99 ≥ 20x faster than ElastAlert2 at `run_every` 1 s "
            f"({fmt(d['elastalert_1s']['p99'], 2)} s vs {fmt(d['faultwarden']['p99'], 3)} s)",
            ("n/a" if x is None else f"{x:,.0f}x") + ("" if d["faultwarden"]["trials"] >= 30 else
                                                    f" ({d['faultwarden']['trials']} faultwarden trials, 30 needed)"),
            x is not None and x >= 20 and d["faultwarden"]["trials"] >= 30)
    if "footprint" in results:
        idle, hlp = results["footprint"]["idle"], results["footprint"]["help"]
        rss = idle["rss_mb"]["max"]
        row("idle daemon RSS < 120 MB (largest 1 s sample), no torch imported",
            f"{rss:.0f} MB, torch {'mapped' if idle['loaded']['torch'] else 'not mapped'}",
            rss < 120 and not idle["loaded"]["torch"])
        row("`faultwarden --help` < 0.3 s (median)", f"{hlp['wall_s']['median']:.3f} s", hlp["wall_s"]["median"] < 0.3)
    return out


def render(info: dict, results: dict) -> str:
    m0, m1 = info["machine_start"], info["machine_end"]
    size = info["size"]
    lines = [
        "# faultwarden beside its peers: measured",
        "",
        f"Written by `benchmarks/run`{' --quick' if info['quick'] else ''} on {info['started_at']}; the run took "
        f"{info['minutes']:.1f} minutes. Everything below was measured in that one run, on one machine, against "
        f"one Elasticsearch node. How each figure is measured: [README.md](README.md).",
        "",
        f"- Machine: {m0['nproc']} CPUs ({m0['cpu']}), {m0['mem_mb'] / 1024:.0f} GiB RAM, Linux {m0['kernel']}. "
        f"Load average (1/5/15 min) at the start {' / '.join(map(str, m0['load']))}, at the end "
        f"{' / '.join(map(str, m1['load']))}: the machine is shared, so figures move between runs; ratios "
        "within a round move less than absolute numbers.",
        f"- Elasticsearch {info['es_version']} (the integ-test-zip distribution from Maven Central), one node on "
        "127.0.0.1, 1 GB heap, full JIT.",
        f"- {info['versions']['faultwarden']} (commit {info.get('commit', 'unknown')}); "
        f"{info['versions']['rsyslog']} (Debian); ElastAlert2 "
        f"{results.get('detection', {}).get('elastalert_version', 'n/a')} (PyPI, own venv); Python "
        f"{m0['python']}; {info['versions']['hyperfine']}.",
    ]
    if "log" in info:
        lg = info["log"]
        lines.append(f"- The log: {lg['lines']:,} lines ({lg['bytes'] / 2**20:.0f} MiB) of a training job's ECS "
                     "JSON records as Python's ecs-logging writes them (`ml.step`, `ml.loss`, `ml.grad_norm`, "
                     "... nested under `ml`), checkpoint and warning records among them, and three real faults "
                     "(a NaN loss written as a bare `NaN` token, as Python's json module does; a CUDA OOM; a "
                     "40x loss spike).")
    lines += ["", "## Targets", ""] + targets(results)
    if "shipping" in results:
        s = results["shipping"]
        lines += ["", "## 1. Shipping throughput: file → Elasticsearch", "",
                  f"The same {s['lines']:,}-line file, each contender alone against the node, {s['rounds']} "
                  f"round{'s' if s['rounds'] != 1 else ''} (order rotated each round){s['rounds_note']}. Cells: "
                  "median (min–max). Ratios use medians.", ""]
        lines += shipping.table(s)
        lines += ["",
                  "- events/s: events stored over wall seconds. faultwarden: process start to exit (it exits "
                  "once Elasticsearch acknowledged every event). rsyslog: process start until `_count` shows "
                  "every document it can store (it never exits by itself; polled every 0.2 s, so up to one "
                  "1 s refresh is on its side). Raw ceiling: its bulk loop only (documents pre-serialized "
                  "from faultwarden's own, same ids, same `create` op, same index template). All three "
                  "send batches of 1,000 with 4 requests in flight (faultwarden's default). The node is "
                  "warmed up first with 200,000 untimed documents: a fresh JVM indexes at half speed until "
                  "its JIT has compiled the indexing path.",
                  "- CPU s and peak RSS: the contender's own process (rusage from wait4); Elasticsearch's CPU "
                  "during the run is the node's process tree (psutil).",
                  f"- rsyslog stores {s['lines'] - s['refused_expected']:,}: Elasticsearch refuses the NaN-loss "
                  "line (`NaN` is not JSON) and omelasticsearch writes it to its error file: the one line that "
                  "mattered is not searchable. faultwarden stores it with `ml.loss: null` and "
                  "`ml.non_finite: [ml.loss]`.",
                  "- Document ids: faultwarden (and so the raw ceiling) sends each event with an id derived "
                  "from where it was read, as a `create`, so a replay after a crash or restart stores nothing "
                  "twice; Elasticsearch looks every id up before it writes (cheaply: one file's ids grow "
                  "in the order it was written, see docs/shipping.md). rsyslog lets Elasticsearch "
                  "generate ids (its append-only fast path: less node CPU per document, and duplicates "
                  "after any replay).",
                  "- rsyslog's peak RSS is mostly its queues (the main queue's default 100,000 messages; "
                  "the action queue's 20,000, as many as faultwarden keeps in flight) filling while Elasticsearch is the bottleneck."]
        lines += ["", "<details><summary>every run</summary>", "",
                  "| round | contender | events/s | wall s | CPU s | peak RSS MB | ES CPU s |", "|---:|---|---:|---:|---:|---:|---:|"]
        for name, rs in s["runs"].items():
            for i, r in enumerate(rs):
                lines.append(f"| {i + 1} | {name} | {fmt(r['events_per_s'])} | {fmt(r['wall_s'], 1)} | "
                             f"{fmt(r['cpu_s'], 1)} | {fmt(r['peak_rss_mb'])} | {fmt(r['es_cpu_s'], 1)} |")
        lines += ["", "</details>"]
    if "detection" in results:
        d = results["detection"]
        lines += ["", "## 2. Time to detect: fault line appended → webhook notified", "",
                  "Both detectors watch the same appends at once: faultwarden's service mode tails the log "
                  "(default rule pack, `cuda-oom` rule) and ships it to Elasticsearch; ElastAlert2 queries "
                  "that index with the equivalent rule (type `any` on `message:\"CUDA out of memory\"`, HTTP "
                  "POST alerter). Each trial is a new run id, hence a new incident / match. faultwarden's row "
                  f"pools the trials of both phases ({d['faultwarden']['trials']}). p99 is nearest-rank (with "
                  "30 trials: the slowest).", ""]
        lines += detection.table(d)
        lines += ["",
                  "- t0: just before the line is written (one `write` on an O_APPEND descriptor); t1: the "
                  "webhook (an HTTP server in the benchmark, 127.0.0.1) has read the POST.",
                  "- ElastAlert2's time holds what any alerting on Elasticsearch pays: the shipper's flush "
                  "(faultwarden's `flush_interval_s`, 1 s), the index refresh (1 s), the query schedule. "
                  f"At `run_every` 1 minute the {len(d['slow'])} lines were appended at random moments over "
                  f"{size['slow_window_s']} s, so they fall anywhere in its schedule.",
                  "- ElastAlert2 talks to the node through a small pass-through proxy that answers `GET /` "
                  "(the test distribution has no info endpoint; ElastAlert2 asks it for the version at "
                  "start-up): peers/es_info_shim.py.",
                  f"- The faultwarden service used {fmt(d['faultwarden_service_cpu_s'], 1)} CPU s and peaked at "
                  f"{fmt(d['faultwarden_service_peak_rss_mb'])} MB RSS over the whole comparison."]
    if "diagnosis" in results:
        g = results["diagnosis"]
        lines += ["", "## 3. Offline diagnosis throughput", "",
                  f"The same log, {g['rounds']} round{'s' if g['rounds'] != 1 else ''} each; cells: median (min–max). \"faultwarden vs it\" is "
                  "faultwarden's lines/s over the tool's: below 1x faultwarden is slower, and does more.", ""]
        lines += diagnosis.table(g)
        lines += ["",
                  "- faultwarden: the whole `diagnose` command, spawn to exit (interpreter start, imports, "
                  "parsing every format, the default rule pack, incidents, the JSON report). The peers: their "
                  "loop only (no start-up), so the yardstick is strict.",
                  "- Drain3 mines the `message` field (decoded with orjson). Fed whole JSON lines it finds one "
                  "template per line (JSON has no spaces), which is why the last row uses only a sample."]
    if "footprint" in results:
        f = results["footprint"]
        lines += ["", "## 4. Footprint", ""] + footprint.table(f["idle"], f["help"])
        lines += ["",
                  "- The idle daemon is `faultwarden run --config F` (service mode) over 100 files with a few "
                  "lines each, Elasticsearch configured; measured after a 15 s warm-up (start-up, first read "
                  "and shipping of those lines). It ran while ElastAlert2's 1-minute phase waited, a quiet "
                  "spell of the run."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
