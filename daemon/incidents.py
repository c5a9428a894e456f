"""Findings become incidents: one per (rule, group) while open, deduplicated, realerted after a
quiet period, inhibited by the fault that caused them, silenced or acknowledged by a person.
The book survives a restart (a JSON file in the state dir, replaced atomically), so a daemon that
comes back sends no second opening message.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from faultwarden.detectors.finding import Finding, severity_rank

Status = Literal["open", "acting", "resolved", "failed", "silenced", "inhibited"]
ACTIVE: tuple[Status, ...] = ("open", "acting", "silenced", "inhibited")  # still going on
QUIET: tuple[Status, ...] = ("silenced", "inhibited")  # going on, but nobody is told
MAX_EVIDENCE = 20
DEFAULT_REALERT_S = 3600.0

# Faults that bring others about in the same job: while an incident of the key is active, a new
# incident of a fault it lists, in the same run, is recorded as `inhibited` (no message, no
# action), as Alertmanager's inhibit rules do. An OOM'd or NCCL-stalled job also stops logging
# (a hang), slows down, loses a rank; a NaN loss makes the loss jump. `anomaly` is a symptom of
# everything. The cause must have been seen within INHIBIT_WINDOW_S before.
_STALLS = frozenset({"hang", "throughput_drop", "latency_slo", "anomaly"})
INHIBITS: dict[str, frozenset[str]] = {
    "cuda_oom": _STALLS | {"distributed_worker_failure", "nccl_timeout", "error_rate"},
    "host_oom_killed": _STALLS | {"distributed_worker_failure", "nccl_timeout", "error_rate"},
    "gpu_hardware": _STALLS | {"cuda_kernel_error", "distributed_worker_failure", "nccl_timeout", "error_rate"},
    "cuda_kernel_error": _STALLS | {"distributed_worker_failure", "nccl_timeout"},
    "nccl_timeout": _STALLS | {"distributed_worker_failure"},
    "distributed_worker_failure": _STALLS | {"nccl_timeout"},
    "disk_full": _STALLS | {"checkpoint_corrupt", "error_rate"},
    "nan_inf": frozenset({"loss_spike", "anomaly"}),
}
INHIBIT_WINDOW_S = 600.0
_SAME_RUN = ("labels.run_id", "host.name")  # group fields that must agree when both have them


@dataclass(frozen=True)
class Inhibition:
    """Which faults inhibit which, and how long after its last finding a cause still does."""

    causes: dict[str, frozenset[str]] = field(default_factory=lambda: dict(INHIBITS))
    window_s: float = INHIBIT_WINDOW_S

    @classmethod
    def of(cls, settings: Any) -> "Inhibition":
        """From the config's `incidents` section: its own table, or the built-in one."""
        if settings is None:
            return cls()
        if settings.inhibit is None:
            return cls(window_s=settings.inhibit_window_s)
        causes: dict[str, frozenset[str]] = {}
        for rule in settings.inhibit:
            causes[rule.cause] = causes.get(rule.cause, frozenset()) | frozenset(rule.inhibits)
        return cls(causes, settings.inhibit_window_s)


def group_key(group: dict[str, Any]) -> str:
    return json.dumps(group, sort_keys=True, default=str)


def incident_id(rule: str, group: dict[str, Any], path: str | None, offset: int | None) -> str:
    """Deterministic, so `diagnose` and the daemon name the same incident alike."""
    raw = f"{rule}\x1f{group_key(group)}\x1f{path}\x1f{offset}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass
class Incident:
    id: str
    fault: str
    severity: str
    status: Status
    rule: str
    first_seen: float
    last_seen: float
    count: int
    group: dict[str, Any]
    source: dict[str, Any]
    message: str
    advice: str
    evidence: list[str]
    explanation: dict[str, Any]
    actions: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # e.g. {"discover": a Kibana URL}
    requested: list[str] = field(default_factory=list)
    acknowledged: bool = False
    last_alert: float = 0.0
    inhibited_by: str | None = None  # the incident whose fault brought this one about

    @classmethod
    def open(cls, f: Finding) -> "Incident":
        group = dict(f.group)
        return cls(
            id=incident_id(f.rule, group, f.source.path, f.source.offset), fault=f.fault,
            severity=f.severity, status="open", rule=f.rule, first_seen=f.time, last_seen=f.time,
            count=1, group=group, source={"path": f.source.path, "line": f.source.line},
            message=f.message, advice=f.advice, evidence=list(f.evidence[:MAX_EVIDENCE]),
            explanation=dict(f.explanation), requested=list(f.actions), last_alert=f.time,
        )

    @property
    def key(self) -> tuple[str, str]:
        return self.rule, group_key(self.group)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_json(self) -> dict[str, Any]:
        """The `diagnose --format json` shape (design brief)."""
        out = asdict(self)
        for internal in ("requested", "acknowledged", "last_alert"):
            out.pop(internal)
        return out

    def note_action(self, name: str, outcome: str, **details: Any) -> None:
        self.actions.append({"action": name, "outcome": outcome, "at": time.time(), **details})


@dataclass(frozen=True)
class Update:
    """What a finding did to the book; `alert` says whether people should hear of it now."""

    incident: Incident
    opened: bool
    alert: bool


@dataclass
class Silence:
    matchers: dict[str, str]  # rule, fault, or a group field -> value
    until: float
    comment: str = ""

    def covers(self, inc: Incident) -> bool:
        fields = {"rule": inc.rule, "fault": inc.fault, **{k: str(v) for k, v in inc.group.items()}}
        return all(fields.get(k) == v for k, v in self.matchers.items())


class IncidentBook:
    def __init__(self, path: str | Path | None = None, clock=time.time, inhibition: Inhibition | None = None):
        self.path = Path(path) if path else None
        self.clock = clock
        self.inhibition = inhibition or Inhibition()
        self.incidents: dict[str, Incident] = {}
        self.silences: list[Silence] = []
        self._seen_mtime: int | None = None  # the file as this book last read or wrote it
        if self.path and self.path.exists():
            self._load()

    # --- the pipeline's side -------------------------------------------------------------
    def record(self, f: Finding) -> Update:
        current = self._active(f.rule, group_key(dict(f.group)))
        if current is None:
            inc = Incident.open(f)
            if self._silenced(inc):
                inc.status = "silenced"
            elif (cause := self._cause_of(inc)) is not None:
                inc.status, inc.inhibited_by = "inhibited", cause.id
            self.incidents[inc.id] = inc
            return Update(inc, opened=True, alert=inc.status == "open")
        # Inhibited, but its cause is over (resolved, or quiet for the window) and this goes on:
        # a problem of its own now, told as an opening.
        reopened = current.status == "inhibited" and self._cause_of(current, f.time) is None
        if reopened:
            current.status, current.inhibited_by = "open", None
        current.count += 1
        current.last_seen = max(current.last_seen, f.time)
        if severity_rank(f.severity) > severity_rank(current.severity):
            current.severity = f.severity
        if len(current.evidence) < MAX_EVIDENCE:
            current.evidence.extend(f.evidence[: MAX_EVIDENCE - len(current.evidence)])
        realert = f.realert_s if f.realert_s is not None else DEFAULT_REALERT_S
        alert = reopened or (not current.acknowledged and current.status not in QUIET
                             and f.time - current.last_alert >= realert)
        if alert:
            current.last_alert = f.time
        return Update(current, opened=reopened, alert=alert)

    def _active(self, rule: str, key: str) -> Incident | None:
        for inc in self.incidents.values():
            if inc.active and inc.key == (rule, key):
                return inc
        return None

    def _cause_of(self, inc: Incident, at: float | None = None) -> Incident | None:
        """An active incident in the same run whose fault brings `inc`'s about, seen within the
        inhibition window before `at` (default: `inc`'s first finding)."""
        at = inc.first_seen if at is None else at
        causes, window = self.inhibition.causes, self.inhibition.window_s
        for other in self.incidents.values():
            if (other.id != inc.id and other.status in ACTIVE and other.status != "inhibited"
                    and inc.fault in causes.get(other.fault, ())
                    and other.first_seen <= at <= other.last_seen + window
                    and _same_run(other, inc)):
                return other
        return None

    def _silenced(self, inc: Incident) -> bool:
        now = self.clock()
        return any(s.until > now and s.covers(inc) for s in self.silences)

    # --- a person's side -----------------------------------------------------------------
    def get(self, incident_id: str) -> Incident:
        matches = [i for i in self.incidents.values() if i.id.startswith(incident_id)]
        if len(matches) != 1:
            raise KeyError(incident_id)
        return matches[0]

    def ack(self, incident_id: str) -> Incident:
        inc = self.get(incident_id)
        inc.acknowledged = True
        return inc

    def silence(self, matchers: dict[str, str], duration_s: float, comment: str = "") -> Silence:
        s = Silence(matchers, self.clock() + duration_s, comment)
        self.silences.append(s)
        for inc in self.incidents.values():
            if inc.status == "open" and s.covers(inc):
                inc.status = "silenced"
        return s

    def resolve(self, inc: Incident, status: Status = "resolved") -> None:
        inc.status = status

    def listing(self, include_closed: bool = False) -> list[Incident]:
        items = [i for i in self.incidents.values() if include_closed or i.active]
        return sorted(items, key=lambda i: i.first_seen)

    # --- persistence ---------------------------------------------------------------------
    def sync(self) -> bool:
        """Take in what a person wrote to the file meanwhile (`incidents ack|silence` while the
        daemon runs): acknowledgements and silences are merged, nothing of ours is lost."""
        if not self.path or not self.path.exists():
            return False
        mtime = self.path.stat().st_mtime_ns
        if mtime == self._seen_mtime:
            return False
        theirs = IncidentBook(self.path, self.clock, self.inhibition)
        for inc in theirs.incidents.values():
            ours = self.incidents.get(inc.id)
            if ours is None:
                continue
            ours.acknowledged |= inc.acknowledged
            if inc.status == "silenced" and ours.status == "open":
                ours.status = "silenced"
        known = {(json.dumps(s.matchers, sort_keys=True), s.until) for s in self.silences}
        self.silences += [s for s in theirs.silences
                          if (json.dumps(s.matchers, sort_keys=True), s.until) not in known]
        self._seen_mtime = mtime
        return True

    def save(self) -> None:
        if not self.path:
            return
        self.sync()
        now = self.clock()
        data = {"incidents": [asdict(i) for i in self.incidents.values()],
                "silences": [asdict(s) for s in self.silences if s.until > now]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._seen_mtime = self.path.stat().st_mtime_ns

    def _load(self) -> None:
        self._seen_mtime = self.path.stat().st_mtime_ns
        data = json.loads(self.path.read_text())
        self.incidents = {d["id"]: Incident(**d) for d in data.get("incidents", [])}
        self.silences = [Silence(**s) for s in data.get("silences", [])]


def _same_run(a: Incident, b: Incident) -> bool:
    """Both name the run (or host) and agree on it; naming neither, they came from one file."""
    shared = [k for k in _SAME_RUN if k in a.group and k in b.group]
    if shared:
        return all(a.group[k] == b.group[k] for k in shared)
    return a.source.get("path") is not None and a.source.get("path") == b.source.get("path")


def order(incidents: Iterable[Incident]) -> list[Incident]:
    return sorted(incidents, key=lambda i: (i.first_seen, i.id))
