"""How well the isolation-forest detector finds labelled anomalies, next to trivial baselines.

    python benchmarks/anomaly_eval.py [--data /work/shared/datasets] [--hdfs-splits all|iid|seq|NAME...]
                                      [--refit-periods K] [--json FILE]

HDFS (hdfs_v1_loglead_2pct: 11,501 block sessions, 350 anomalous, with train/test splits):
  sessions keyed by `blk_-?\\d+` in the message. faultwarden fits on the lines of the training
  split's NORMAL blocks only; its threshold comes from those training windows' scores alone
  (the default rule, fixed before any label was looked at). Precision/recall/F1 on the test
  split's blocks. Next to it:
  - "warn line": a block is anomalous if any of its lines is WARN or above;
  - "loglizer": loglizer's IsolationForest row as the dataset README gives it (ground-truth
    event-count matrix of ALL training blocks, contamination 0.03, max_samples 0.9999,
    random_state 2019), re-run here.
  With `split_seq`, also a refit cadence (`--refit-periods K`, default 4): the test period cut
  into K periods in time order, each scored by a model refitted on the one or two periods
  before it.
BGL (loghub_2k, 2,000 lines sampled over seven months, label = first column, `-` normal):
  two splits: "halves" (the first half of the file trains, the second is scored) and
  "interleaved" (even lines train, odd lines are scored); only the normal lines of the training
  side are fitted on. Scored per line (1-event windows) and in 10-line count windows of the
  scored side (a window is anomalous if any line in it is). Baseline: "fatal line" (a window
  with a FATAL-level line is anomalous).

Lines become events here with a small parser per dataset (fields as design.md names them), so
the figures measure the detector, not a general-purpose log parser. Figures: docs/anomaly.md.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from faultwarden.detectors.anomaly import ModelSpec, fit
from faultwarden.detectors.anomaly.windows import Window

DEFAULT_DATA = Path("/work/shared/datasets")
BLOCK = re.compile(r"blk_-?\d+")
QUANTILES = (0.99, 0.995, 0.999, 1.0)   # the sweep shown next to the default
HDFS_LINE = re.compile(r"^(\d{6}) (\d{6}) (\d+) (\w+) ([^:]+): (.*)$")
BGL_LINE = re.compile(r"^(\S+) (\d+) \S+ (\S+) \S+ \S+ (\S+) (\S+) (\S+) ?(.*)$")


# -- metrics -----------------------------------------------------------------------------------
def prf(predicted: dict, truth: dict) -> dict[str, float]:
    """Binary precision/recall/F1 over the keys of `truth` (a key never predicted is negative)."""
    tp = sum(1 for k, t in truth.items() if t and predicted.get(k, False))
    fp = sum(1 for k, t in truth.items() if not t and predicted.get(k, False))
    fn = sum(1 for k, t in truth.items() if t and not predicted.get(k, False))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn}


def score_windows(model, windows: list[Window]) -> list:
    out = []
    for i in range(0, len(windows), 2048):
        out.extend(model.score(windows[i:i + 2048]))
    return out


def windows_of(model, events: Iterable[dict]) -> list[Window]:
    windower = model.windower()
    windows: list[Window] = []
    for event in events:
        windows.extend(windower.add(event))
    windows.extend(windower.flush())
    return windows


# -- HDFS --------------------------------------------------------------------------------------
def hdfs_events(path: Path) -> Iterator[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            m = HDFS_LINE.match(line.rstrip("\r\n"))
            if not m:
                continue
            date, clock, pid, level, logger, message = m.groups()
            when = datetime.strptime(date + clock, "%y%m%d%H%M%S").replace(tzinfo=timezone.utc)
            yield {"@timestamp": when.timestamp(), "message": message, "log.level": level.lower(),
                   "log.logger": logger, "process.pid": int(pid), "log.file.path": str(path),
                   "log.file.line": number}


def hdfs_splits(root: Path) -> tuple[dict[str, bool], dict[str, dict[str, str]]]:
    labels: dict[str, bool] = {}
    splits: dict[str, dict[str, str]] = {}
    with open(root / "splits.csv", newline="") as f:
        for row in csv.DictReader(f):
            labels[row["BlockId"]] = row["Label"] == "Anomaly"
            for name, value in row.items():
                if name.startswith("split_"):
                    splits.setdefault(name, {})[row["BlockId"]] = value
    return labels, splits


def hdfs_faultwarden(root: Path, labels, split: dict[str, str], spec: ModelSpec) -> dict:
    log = root / "HDFS_2pct.log.gz"
    train = {b for b, s in split.items() if s == "train" and not labels[b]}
    test = {b for b, s in split.items() if s == "test"}

    def training() -> Iterator[dict]:
        for event in hdfs_events(log):
            blocks = set(BLOCK.findall(event["message"]))
            if blocks and blocks <= train:
                yield event

    started = time.monotonic()
    model = fit(training, spec)
    fitted = time.monotonic()
    testing = (e for e in hdfs_events(log) if set(BLOCK.findall(e["message"])) & test)
    scored = score_windows(model, windows_of(model, testing))
    scored_s = time.monotonic() - fitted
    truth = {b: labels[b] for b in test}
    keys = [s.window.group["session"] for s in scored]
    result = {**prf(dict(zip(keys, (s.anomalous for s in scored))), truth),
              "threshold": model.threshold, "training_windows": model.training["windows"],
              "templates": model.training["templates"], "fit_s": fitted - started, "score_s": scored_s}
    result["parts"] = parts(model, scored, keys, truth, windows_of(model, training()))
    return result


def parts(model, scored: list, keys: list, truth: dict, training_windows: list[Window]) -> dict:
    """What each test contributes, and the whole at other quantiles (thresholds from the training
    windows' own scores, as fit sets them)."""
    import numpy as np

    trained = score_windows(model, training_windows)
    q = model.spec.quantile
    forest_cut = np.quantile([s.forest for s in trained], q)
    surprise_cut = np.quantile([s.surprise for s in trained], q)
    out = {
        "forest only": prf(dict(zip(keys, (s.forest > forest_cut for s in scored))), truth),
        "surprise only": prf(dict(zip(keys, (s.surprise > surprise_cut for s in scored))), truth),
        "range only": prf(dict(zip(keys, (bool(s.beyond) for s in scored))), truth),
    }
    training_scores = [s.score for s in trained]
    for other in QUANTILES:
        cut = np.quantile(training_scores, other)
        out[f"quantile {other}"] = prf(dict(zip(keys, (s.score > cut or bool(s.beyond) for s in scored))), truth)
    return out


def hdfs_refit(root: Path, labels, split: dict[str, str], spec: ModelSpec, chunks: int) -> dict:
    """`split_seq` with a refit cadence: the test period, in time order (a block's first line),
    is cut into `chunks` periods; period 0 is scored by the model fitted on the training split,
    period k by a model refitted on the healthy blocks of the `history` periods before it (the
    training split counting as one period), as an operator who refits every period on the
    latest healthy logs would have it. Two ways to pick those blocks:
    - "triaged": the periods' normal blocks (the incidents of each period were looked at and the
      false alarms taken back in): labels choose training data, as they do for the first fit;
    - "unattended": the blocks that raised no finding (no label is looked at).
    Next to them, the model fitted once ("no refit") scoring the same periods."""
    log = root / "HDFS_2pct.log.gz"
    order: dict[str, None] = {}
    for event in hdfs_events(log):
        for block in BLOCK.findall(event["message"]):
            if split.get(block) == "test":
                order.setdefault(block)
    blocks = list(order)
    periods = [set(blocks[i * len(blocks) // chunks:(i + 1) * len(blocks) // chunks]) for i in range(chunks)]
    trained = {b for b, s in split.items() if s == "train"}

    def lines_of(chosen: set[str]) -> Iterator[dict]:
        for event in hdfs_events(log):
            named = set(BLOCK.findall(event["message"]))
            if named and named <= chosen:
                yield event

    def predict(model, period: set[str]) -> dict[str, bool]:
        testing = (e for e in hdfs_events(log) if set(BLOCK.findall(e["message"])) & period)
        scored = score_windows(model, windows_of(model, testing))
        return {s.window.group["session"]: s.anomalous for s in scored if s.window.group["session"] in period}

    first = fit(lambda: lines_of({b for b in trained if not labels[b]}), spec)
    static = [predict(first, p) for p in periods]
    out: dict = {"periods": [len(p) for p in periods],
                 "anomalous": [sum(labels[b] for b in p) for p in periods]}
    out["no refit"] = _periods_prf(static, periods, labels)
    for way, history in (("triaged", 1), ("triaged", 2), ("unattended", 1)):
        predicted = [static[0]]
        # Training-split blocks count as healthy for both ways: the first fit took them as such.
        healthy_in = [{b for b in trained if not labels[b]}]
        for k in range(1, chunks):
            previous = periods[k - 1]
            healthy_in.append({b for b in previous if not labels[b]} if way == "triaged"
                              else {b for b in previous if not predicted[k - 1].get(b, False)})
            healthy = set().union(*healthy_in[-history:])
            model = fit(lambda: lines_of(healthy), spec)
            predicted.append(predict(model, periods[k]))
        out[f"refit, {way}, last {history}"] = _periods_prf(predicted, periods, labels)
    return out


def _periods_prf(predicted: list[dict], periods: list[set[str]], labels) -> dict:
    """Over all periods, and per period."""
    merged = {b: a for p in predicted for b, a in p.items()}
    whole = prf(merged, {b: labels[b] for p in periods for b in p})
    whole["per_period_f1"] = [prf(pred, {b: labels[b] for b in p})["f1"] for pred, p in zip(predicted, periods)]
    return whole


def hdfs_warn_baseline(root: Path, labels, split: dict[str, str]) -> dict:
    test = {b for b, s in split.items() if s == "test"}
    flagged: dict[str, bool] = {}
    for event in hdfs_events(root / "HDFS_2pct.log.gz"):
        if event["log.level"] not in ("info", "debug"):
            for block in BLOCK.findall(event["message"]):
                flagged[block] = True
    return prf(flagged, {b: labels[b] for b in test})


def hdfs_loglizer(root: Path, labels, split: dict[str, str]) -> dict:
    """loglizer's IsolationForest row (README protocol): ground-truth event counts, all training
    blocks (anomalies included), contamination 0.03, predict -1 = anomalous."""
    import numpy as np
    from sklearn.ensemble import IsolationForest

    sequences: dict[str, list[str]] = {}
    with open(root / "HDFS_2pct_event_traces.csv", newline="") as f:
        for row in csv.DictReader(f):
            sequences[row["BlockId"]] = row["EventSequence"].split()
    train = [b for b in sequences if split.get(b) == "train"]
    test = [b for b in sequences if split.get(b) == "test"]
    events = sorted({e for b in train for e in sequences[b]})
    column = {e: i for i, e in enumerate(events)}

    def matrix(blocks):
        x = np.zeros((len(blocks), len(events)))
        for row, b in enumerate(blocks):
            for e in sequences[b]:
                if e in column:   # events unseen in train are dropped, as loglizer does
                    x[row, column[e]] += 1
        return x

    forest = IsolationForest(n_estimators=100, max_samples=0.9999, contamination=0.03, random_state=2019)
    forest.fit(matrix(train))
    predicted = dict(zip(test, (forest.predict(matrix(test)) == -1).tolist()))
    return prf(predicted, {b: labels[b] for b in test})


# -- BGL ---------------------------------------------------------------------------------------
def bgl_lines(path: Path) -> list[tuple[bool, dict]]:
    out = []
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for number, line in enumerate(f, 1):
            m = BGL_LINE.match(line.rstrip("\r\n"))
            if not m:
                continue
            label, epoch, node, _kind, logger, level, message = m.groups()
            # The label column is NOT part of the event: the detector must not see it.
            out.append((label != "-", {
                "@timestamp": float(epoch), "message": message, "log.level": level.lower(),
                "log.logger": logger, "host.name": node, "log.file.path": str(path),
                "log.file.line": number}))
    return out


def bgl(root: Path, window: int, spec: ModelSpec, protocol: str) -> dict:
    """`halves`: the first half of the file trains, the second is scored (months later: most of
    its message types never occur in the first half). `interleaved`: even lines train, odd lines
    are scored (the same months on both sides)."""
    lines = bgl_lines(root / "BGL" / "BGL_2k.log")
    if protocol == "halves":
        half = len(lines) // 2
        fitting, test = lines[:half], lines[half:]
    else:
        fitting, test = lines[0::2], lines[1::2]
    train = [e for anomalous, e in fitting if not anomalous]
    # Each test line carries its position so that a window's label is known.
    truth_by_line = {e["log.file.line"]: anomalous for anomalous, e in test}
    spec = spec.replace(window_events=window, min_events=1)
    model = fit(lambda: iter(train), spec)
    windows = windows_of(model, (e for _, e in test))
    # Count windows are consecutive lines: a window covers first line .. first line + events - 1.
    predicted, truth, fatal = {}, {}, {}
    starts = [w.first["log.file.line"] for w in windows]
    scored = score_windows(model, windows)
    ordered = [e["log.file.line"] for _, e in test]
    position = {line: i for i, line in enumerate(ordered)}
    for s, start in zip(scored, starts):
        covered = ordered[position[start]:position[start] + s.window.events]
        truth[start] = any(truth_by_line[n] for n in covered)
        predicted[start] = s.anomalous
        fatal[start] = s.window.levels.get("critical", 0) > 0
    unseen = sum(1 for s in scored if s.window.unseen and not truth[s.window.first["log.file.line"]])
    return {"faultwarden": prf(predicted, truth), "fatal line": prf(fatal, truth),
            "windows": len(truth), "anomalous_windows": sum(truth.values()), "threshold": model.threshold,
            "normal_windows_with_unseen_templates": unseen}


# -- report ------------------------------------------------------------------------------------
def row(name: str, m: dict) -> str:
    return f"  {name:<34} P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}"


def mean_sd(results: list[dict], key: str) -> str:
    values = [r[key] for r in results]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--hdfs-splits", nargs="+", default=["all"],
                        help="all, iid, seq, or split column names (split_iid_s0 ...)")
    parser.add_argument("--skip-hdfs", action="store_true")
    parser.add_argument("--skip-bgl", action="store_true")
    parser.add_argument("--tfidf", action="store_true", help="also run faultwarden with tf-idf weights")
    parser.add_argument("--refit-periods", type=int, default=4, metavar="K",
                        help="split_seq with a refit cadence: the test period in K periods (0: skip)")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    args = parser.parse_args(argv)
    report: dict = {}
    spec = ModelSpec(name="eval")

    if not args.skip_hdfs:
        root = args.data / "hdfs_v1_loglead_2pct"
        labels, splits = hdfs_splits(root)
        wanted = []
        for name in args.hdfs_splits:
            if name == "all":
                wanted += sorted(splits)
            elif name in ("iid", "seq"):
                wanted += sorted(s for s in splits if s.startswith(f"split_{name}"))
            else:
                wanted.append(name)
        session_spec = spec.replace(session_regex=BLOCK.pattern)
        variants: dict[str, ModelSpec] = {"faultwarden": session_spec}
        if args.tfidf:
            variants["faultwarden tf-idf"] = session_spec.replace(tfidf=True)
        print("HDFS (hdfs_v1_loglead_2pct), test split, per block:")
        for split_name in dict.fromkeys(wanted):
            split = splits[split_name]
            results = {name: hdfs_faultwarden(root, labels, split, s) for name, s in variants.items()}
            results["warn line"] = hdfs_warn_baseline(root, labels, split)
            results["loglizer (README protocol)"] = hdfs_loglizer(root, labels, split)
            report.setdefault("hdfs", {})[split_name] = results
            print(f" {split_name}:")
            for name, m in results.items():
                extra = f"   (fit {m['fit_s']:.0f} s, score {m['score_s']:.0f} s)" if "fit_s" in m else ""
                print(row(name, m) + extra)
                for part, pm in m.get("parts", {}).items():
                    print(row(f"  {part}", pm))
            sys.stdout.flush()
        iid = [s for s in report.get("hdfs", {}) if s.startswith("split_iid")]
        if len(iid) > 1:
            print(" mean ± sd over the iid splits:")
            for name in report["hdfs"][iid[0]]:
                rs = [report["hdfs"][s][name] for s in iid]
                print(f"  {name:<34} P {mean_sd(rs, 'precision')}  R {mean_sd(rs, 'recall')}  "
                      f"F1 {mean_sd(rs, 'f1')}")
        if args.refit_periods > 1 and "split_seq" in wanted:
            k = args.refit_periods
            result = hdfs_refit(root, labels, splits["split_seq"], session_spec, k)
            report.setdefault("hdfs_refit", {})["split_seq"] = result
            print(f" split_seq with a refit cadence: the test period in {k} periods of "
                  f"{'/'.join(map(str, result['periods']))} blocks "
                  f"({'/'.join(map(str, result['anomalous']))} anomalous), each scored by a model fitted on "
                  "the period(s) before:")
            for name, m in result.items():
                if not isinstance(m, dict):
                    continue
                print(row(name, m) + "   F1 per period " + " ".join(f"{f:.3f}" for f in m["per_period_f1"]))

    if not args.skip_bgl:
        print("BGL (loghub_2k):")
        for protocol in ("halves", "interleaved"):
            for window in (1, 10):
                result = bgl(args.data / "loghub_2k", window, spec, protocol)
                report.setdefault("bgl", {})[f"{protocol}_window_{window}"] = result
                print(f" {protocol}, {window}-line windows ({result['windows']}, {result['anomalous_windows']} "
                      f"anomalous; {result['normal_windows_with_unseen_templates']} normal ones hold a "
                      f"template unseen in training):")
                print(row("faultwarden", result["faultwarden"]))
                print(row("fatal line", result["fatal line"]))

    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
