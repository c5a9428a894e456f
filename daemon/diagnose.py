"""`diagnose`: past logs through the live daemon's path (parse → detectors → incidents), with no
tail, shipping or actions, so a crashed run's files give the incidents the daemon would have
raised. The result is plain data (`Diagnosis`) for `report` to render.

Files are read together, merged by event time, so the ranks of one run interleave as they
happened; input ends at the last event (no final tick: the end of a log is not a hang).
"""
from __future__ import annotations

import glob
import gzip
import heapq
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatch
from typing import Any, Callable, Iterable, Iterator

from faultwarden.daemon.incidents import Incident, IncidentBook, Inhibition
from faultwarden.daemon.pipeline import ModelError, Pipeline, detectors_for
from faultwarden.daemon.plot import Series
from faultwarden.detectors.finding import Detector, Event

# The incident fields of `diagnose --format json`, exactly as the design brief gives them.
INCIDENT_FIELDS = ("id", "fault", "severity", "status", "rule", "first_seen", "last_seen", "count", "group",
                   "source", "message", "advice", "evidence", "explanation", "actions")
MAX_MERGED_FILES = 256  # beyond this many open files, read one after the other
ERROR_LEVELS = frozenset({"error", "critical", "fatal", "alert", "emergency"})
GZIP_MAGIC = b"\x1f\x8b"


class InputError(Exception):
    """A path that names nothing readable (a log, the anomaly model); the message says which and why."""


# --- inputs --------------------------------------------------------------------------------
def expand(paths: Iterable[str]) -> list[str]:
    """Files, folders (recursively; hidden entries skipped) and globs → files, in a stable order.
    Raises InputError for a path or glob that names no file."""
    found: dict[str, None] = {}
    for raw in paths:
        if os.path.isdir(raw):
            files = _walk(raw)
        elif os.path.isfile(raw):
            files = [raw]
        elif glob.has_magic(raw):
            files = [f for m in sorted(glob.glob(raw, recursive=True))
                     for f in (_walk(m) if os.path.isdir(m) else [m] if os.path.isfile(m) else [])]
            if not files:
                raise InputError(f"{raw}: no file matches this pattern")
        else:
            raise InputError(f"{raw}: no such file or folder")
        for f in files:
            found.setdefault(os.path.normpath(f), None)
    return list(found)


def _walk(folder: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return out


def _open_bytes(path: str):
    with open(path, "rb") as f:
        gz = f.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")


def count_lines(path: str) -> int:
    n, last = 0, b"\n"
    with _open_bytes(path) as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")  # a last line without its newline is a line too


def source_for(path: str, config) -> Any:
    """The configured source whose globs cover this file (its format, run id, labels), if any."""
    if config is None:
        return None
    full = os.path.abspath(path)
    for source in config.sources:
        if any(fnmatch(full, os.path.abspath(os.path.expanduser(p))) or fnmatch(path, p) for p in source.paths):
            return source
    return None


def events_of(files: list[str], config=None) -> Iterator[Event]:
    """Every event of every file, merged by event time (files already in time order stay so)."""
    from faultwarden.daemon.parse import read_file

    streams = [read_file(f, source_for(f, config)) for f in files]
    if len(streams) > MAX_MERGED_FILES:
        for s in streams:
            yield from s
        return
    yield from heapq.merge(*streams, key=lambda e: e["@timestamp"])


def detect(events: Iterable[Event], detectors: list[Detector], observe: Callable[[Event], None] | None = None,
           inhibition: Inhibition | None = None) -> Pipeline:
    """Run events through the pipeline into an in-memory incident book; the end of the input
    closes what detectors hold open (anomaly windows), but passes no time."""
    pipeline = Pipeline(detectors, IncidentBook(inhibition=inhibition))
    for event in events:
        pipeline.feed(event)
        if observe is not None:
            observe(event)
    pipeline.flush()
    return pipeline


# --- the result ----------------------------------------------------------------------------
@dataclass
class Run:
    """One run's story: labels.run_id, else the file it came from."""

    name: str
    files: list[str] = field(default_factory=list)
    events: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    first_error: dict[str, Any] | None = None
    incidents: list[str] = field(default_factory=list)
    last_step: int | None = None
    last_loss: float | None = None
    # Thinned series for the report's charts and the throughput trend.
    loss: Series = field(default_factory=Series)
    latency: Series = field(default_factory=Series)
    throughput: Series = field(default_factory=Series)
    throughput_unit: str = ""

    def numbers(self) -> dict[str, Any]:
        """The run's own numbers: how far it got, where its loss ended, how its speed moved."""
        out: dict[str, Any] = {}
        if self.last_step is not None:
            out["steps_reached"] = self.last_step
        if self.last_loss is not None:
            out["last_loss"] = self.last_loss
        pts = [v for _, v in self.throughput.points if math.isfinite(v)]
        if len(pts) >= 6:
            third = len(pts) // 3
            start, end = sum(pts[:third]) / third, sum(pts[-third:]) / third
            out["throughput"] = {"unit": self.throughput_unit, "start": round(start, 3), "end": round(end, 3),
                                 "change": round(end / start - 1, 3) if start else None}
        return out

    def to_json(self) -> dict[str, Any]:
        return {"run": self.name, "files": self.files, "events": self.events,
                "first_seen": self.first_seen, "last_seen": self.last_seen,
                "first_error": self.first_error, "incidents": self.incidents, "numbers": self.numbers()}


@dataclass
class Diagnosis:
    files: list[str]
    lines: int
    events: int
    parse_errors: int
    incidents: list[Incident]
    runs: list[Run]

    def by_fault(self) -> dict[str, int]:
        return dict(sorted(Counter(i.fault for i in self.incidents).items()))

    def summary(self) -> dict[str, Any]:
        return {"files": len(self.files), "lines": self.lines, "events": self.events,
                "parse_errors": self.parse_errors, "by_fault": self.by_fault(),
                "runs": [r.to_json() for r in self.runs]}

    def to_json(self) -> dict[str, Any]:
        """The `diagnose --format json` shape of the design brief."""
        incidents = [i.to_json() for i in self.incidents]
        return {"incidents": [{k: inc[k] for k in INCIDENT_FIELDS} for inc in incidents],
                "summary": self.summary()}


class _Runs:
    """Follows events into runs as they pass (no event is kept)."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.file_runs: dict[str, set[str]] = {}

    def observe(self, ev: Event) -> None:
        path = ev.get("log.file.path")
        name = str(ev.get("labels.run_id") or path or "(input)")
        run = self.runs.get(name)
        if run is None:
            run = self.runs[name] = Run(name)
        if path and path not in run.files:
            run.files.append(path)
            self.file_runs.setdefault(path, set()).add(name)
        run.events += 1
        t = ev.get("@timestamp")
        if isinstance(t, (int, float)):
            run.first_seen = t if run.first_seen is None else min(run.first_seen, t)
            run.last_seen = t if run.last_seen is None else max(run.last_seen, t)
        _numbers(run, ev, t)
        if run.first_error is None and (ev.get("log.level") in ERROR_LEVELS or ev.get("error.type")):
            run.first_error = {"time": t, "path": path, "line": ev.get("log.file.line"), "message": _error_line(ev)}

    def run_of(self, inc: Incident) -> str:
        run_id = inc.group.get("labels.run_id")
        if run_id is not None:
            return str(run_id)
        path = inc.source.get("path")
        names = self.file_runs.get(path or "", set())
        return next(iter(names)) if len(names) == 1 else str(path or "(input)")


THROUGHPUT_FIELDS = (("ml.samples_per_s", "samples/s"), ("ml.tokens_per_s", "tokens/s"),
                     ("ml.steps_per_s", "steps/s"))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(run: Run, ev: Event, t: Any) -> None:
    if not _number(t):
        return
    step, loss, latency = ev.get("ml.step"), ev.get("ml.loss"), ev.get("ml.latency_ms")
    if _number(step) and math.isfinite(step):
        run.last_step = int(step) if run.last_step is None else max(run.last_step, int(step))
    if _number(loss):
        run.loss.add(t, float(loss))
        if math.isfinite(loss):
            run.last_loss = float(loss)
    if _number(latency):
        run.latency.add(t, float(latency))
    for name, unit in THROUGHPUT_FIELDS:
        value = ev.get(name)
        if _number(value) and (run.throughput_unit in ("", unit)):
            run.throughput_unit = unit
            run.throughput.add(t, float(value))
            break


def _timeline_order(inc: Incident) -> tuple:
    """By time, then by place in the file: a traceback read at the same second as the line
    before it still comes after it."""
    return inc.first_seen, str(inc.source.get("path")), inc.source.get("line") or 0, inc.id


def _error_line(ev: Event) -> str:
    """An error in one line: `Type: message` when the parser split a traceback, else its first line."""
    etype, emsg = ev.get("error.type"), ev.get("error.message")
    if etype or emsg:
        return (f"{etype}: {emsg}" if etype and emsg else str(etype or emsg))[:300]
    text = str(ev.get("message") or "").strip()
    return text.splitlines()[0][:300] if text else ""


def diagnose(paths: list[str], ruleset, config=None, on_event: Callable[[Event], None] | None = None) -> Diagnosis:
    """Raises InputError for a path that names nothing, or an anomaly model that won't load."""
    files = expand(paths)
    runs = _Runs()

    def observe(ev: Event) -> None:
        runs.observe(ev)
        if on_event is not None:
            on_event(ev)

    try:
        detectors = detectors_for(ruleset, config.detectors.anomaly.model if config is not None else None)
    except ModelError as exc:
        raise InputError(str(exc)) from None
    pipeline = detect(events_of(files, config), detectors, observe,
                      Inhibition.of(config.incidents if config is not None else None))
    incidents = sorted(pipeline.book.incidents.values(), key=_timeline_order)
    for inc in incidents:
        name = runs.run_of(inc)
        run = runs.runs.get(name)
        if run is None:
            run = runs.runs[name] = Run(name)
        run.incidents.append(inc.id)
    ordered_runs = sorted(runs.runs.values(), key=lambda r: (r.first_seen is None, r.first_seen or 0, r.name))
    return Diagnosis(files=files, lines=sum(count_lines(f) for f in files), events=pipeline.counters.events,
                     parse_errors=pipeline.counters.parse_errors, incidents=incidents, runs=ordered_runs)
