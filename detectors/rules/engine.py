"""The rule engine: a `Detector` that runs a RuleSet over events, one series per `group_by` value.

Speed comes from meeting each event only with the rules that could hold on it: rules are indexed
by the fields they need (cached per event shape) and by literals their message regexes require
(one trie-shaped screen per event), so a metrics line never runs the traceback regexes.

A group nobody has heard of for a day (a finished run, a retired host) is forgotten, so a
daemon that runs for months keeps no state for every run it ever saw.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from faultwarden.detectors.finding import Event, Finding, Where
from faultwarden.detectors.rules import conditions as c
from faultwarden.detectors.rules import regex
from faultwarden.detectors.rules.match import Literal, event_text
from faultwarden.detectors.rules.model import Rule
from faultwarden.detectors.rules.ruleset import RuleSet

MAX_EVIDENCE = 10
STATE_VERSION = 1
_SHAPE_CACHE_MAX = 4096
IDLE_GROUP_S = 86400.0  # a group silent this long (event time) is forgotten
SWEEP_EVERY_S = 3600.0


@dataclass
class Held:
    """One group's state for one rule: the condition's own, plus the `for:` clock."""

    st: Any
    seen: float = 0.0  # the last event judged
    since: float | None = None
    first: c.Hit | None = None
    fired: bool = False


@dataclass
class Compiled:
    index: int
    rule: Rule
    cond: c.Condition
    group_by: tuple[str, ...]
    fingerprint: str
    groups: dict[tuple, Any] = field(default_factory=dict)
    next_deadline: float = math.inf  # flatline only: earliest moment a group may go silent
    stateless: bool = False  # judged per event alone: no group state, no `for:` clock

    def __post_init__(self) -> None:
        self.stateless = self.cond.stateless and self.rule.for_ is None

    def key(self, ev: Event) -> tuple:
        return tuple(map(ev.get, self.group_by))


def fingerprint(rule: Rule) -> str:
    """Saved state is only restored into a rule whose condition, grouping and `for` are unchanged."""
    raw = json.dumps([rule.kind, rule.condition.model_dump(mode="json"), rule.group_by, rule.for_],
                     sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class RuleEngine:
    def __init__(self, ruleset: RuleSet | Iterable[Rule]):
        rules = ruleset.rules if isinstance(ruleset, RuleSet) else list(ruleset)
        self.compiled = [Compiled(i, r, c.build(r.kind, r.condition), tuple(r.group_by), fingerprint(r))
                         for i, r in enumerate(rules)]
        self.clock = -math.inf
        self._next_sweep = -math.inf
        self._timed = [x for x in self.compiled if x.cond.timed]
        self._by_field: dict[str, list[int]] = {}
        self._always: list[int] = []
        self._literals: list[tuple[str, bool, list[int]]] = []  # (literal, lower-cased?, rule indexes)
        self._plain: list[tuple[int, str]] = []
        self._folded: list[tuple[int, str]] = []
        self._index()
        self._shapes: dict[tuple, list[Compiled]] = {}  # (field names, literal hits) → rules

    # --- indexing ----------------------------------------------------------------------------
    def _index(self) -> None:
        literal_rules: dict[Literal, set[int]] = {}
        for x in self.compiled:
            needs = x.cond.needs
            if needs is None:
                self._always.append(x.index)
                continue
            for token in needs:
                if isinstance(token, Literal):
                    literal_rules.setdefault(token, set()).add(x.index)
                else:
                    self._by_field.setdefault(token, []).append(x.index)
        literal_rules = _subsume(literal_rules)
        self._literals = [(lit.text, lit.folded, sorted(idx)) for lit, idx in sorted(
            literal_rules.items(), key=lambda kv: (kv[0].folded, kv[0].text))]
        self._plain = [(i, lit) for i, (lit, folded, _) in enumerate(self._literals) if not folded]
        self._folded = [(i, lit) for i, (lit, folded, _) in enumerate(self._literals) if folded]
        self._screen = regex.screen(sorted({regex.anchor(lit) for _, lit in self._plain})).search

    def _candidates(self, ev: Event) -> list[Compiled]:
        """The rules this event could possibly meet, by its fields and its text's literals."""
        hits: tuple[int, ...] = ()
        if self._literals:
            text = event_text(ev)
            if text:
                if self._screen(text) is not None:  # rare: most lines hold no literal at all
                    hits = tuple([i for i, lit in self._plain if lit in text])
                if self._folded:
                    low = text.lower()
                    hits += tuple([i for i, lit in self._folded if lit in low])
        key = (tuple(ev), hits)
        found = self._shapes.get(key)
        if found is None:
            if len(self._shapes) >= _SHAPE_CACHE_MAX:
                self._shapes.clear()
            wanted = set(self._always)
            for name in key[0]:
                wanted.update(self._by_field.get(name, ()))
            for i in hits:
                wanted.update(self._literals[i][2])
            found = self._shapes[key] = [self.compiled[i] for i in sorted(wanted)]
        return found

    # --- the Detector protocol -------------------------------------------------------------
    def observe(self, ev: Event) -> list[Finding]:
        t = _event_time(ev, self.clock)
        out: list[Finding] = []
        if t > self.clock:
            self.clock = t
            if self._timed:
                out.extend(self._expire(t))
            if t >= self._next_sweep:
                self._sweep(t)
        keys: dict[tuple[str, ...], tuple] = {}  # group key by group_by: most rules share one
        for x in self._candidates(ev):
            cond = x.cond
            if cond.timed:
                self._flatline_step(x, ev, t)
                continue
            if x.stateless:
                hit = cond.observe(None, ev, t)
                if hit.__class__ is c.Hit:
                    out.append(self._finding(x, x.key(ev), hit, t))
                continue
            accepts = cond.accepts
            if accepts is not None and not accepts(ev):
                continue
            key = keys.get(x.group_by)
            if key is None:
                key = keys[x.group_by] = x.key(ev)
            held = x.groups.get(key)
            if held is None:
                held = x.groups[key] = Held(cond.new())
            hit = cond.observe(held.st, ev, t)
            if hit is None:
                continue
            held.seen = t
            if hit is False and x.rule.for_ is None:
                continue  # the common case: judged, does not hold, no `for:` clock to reset
            finding = self._held(x, key, held, hit, t)
            if finding is not None:
                out.append(finding)
        return out

    def tick(self, now: float) -> list[Finding]:
        """Wall-clock time passes with no event: silences (hangs) become visible."""
        if now <= self.clock:
            return []
        self.clock = now
        return self._expire(now) if self._timed else []

    def _held(self, x: Compiled, key: tuple, held: Held, hit: c.Hit | bool, t: float) -> Finding | None:
        """A judged event: without `for:` every hit is a finding; with it, one finding once the
        condition has held for the duration (and again only after it stopped holding)."""
        for_s = x.rule.for_
        if not isinstance(hit, c.Hit):
            held.since, held.first, held.fired = None, None, False
            return None
        if for_s is None:
            return self._finding(x, key, hit, t)
        if held.since is None:
            held.since, held.first = t, hit
        if held.fired or t - held.since < for_s:
            return None
        held.fired = True
        first = held.first or hit
        evidence = tuple(dict.fromkeys(first.evidence + hit.evidence))
        return self._finding(x, key, c.Hit(
            f"{hit.message}, holding for {c.fmt_duration(t - held.since)}", first.where, evidence,
            {**hit.explanation, "held_s": round(t - held.since, 3), "for_s": for_s}), t)

    def _flatline_step(self, x: Compiled, ev: Event, t: float) -> None:
        cond: c.FlatlineCond = x.cond  # type: ignore[assignment]
        key = x.key(ev)
        before = x.groups.get(key)
        after = cond.step(before, ev, t)
        if after is None:
            x.groups.pop(key, None)
        elif after is not before:
            x.groups[key] = after
            x.next_deadline = min(x.next_deadline, cond.deadline(after))

    def _expire(self, now: float) -> list[Finding]:
        out: list[Finding] = []
        for x in self._timed:
            if now < x.next_deadline:
                continue
            cond: c.FlatlineCond = x.cond  # type: ignore[assignment]
            nxt = math.inf
            for key, progress in x.groups.items():
                hit = cond.expire(progress, now)
                if hit is not None:
                    out.append(self._finding(x, key, hit, now))
                nxt = min(nxt, cond.deadline(progress))
            x.next_deadline = nxt
        return out

    def _sweep(self, now: float) -> None:
        """Forget groups silent for IDLE_GROUP_S (a flatline group is kept until it has fired)."""
        if math.isfinite(self._next_sweep):
            cutoff = now - IDLE_GROUP_S
            for x in self.compiled:
                if x.cond.timed:
                    stale = [k for k, p in x.groups.items() if p.fired and p.at < cutoff]
                else:
                    stale = [k for k, held in x.groups.items() if held.seen < cutoff]
                for k in stale:
                    del x.groups[k]
        self._next_sweep = now + SWEEP_EVERY_S

    def _finding(self, x: Compiled, key: tuple, hit: c.Hit, t: float) -> Finding:
        r = x.rule
        group: dict[str, Any] = dict(r.labels)
        group.update((f, v) for f, v in zip(x.group_by, key) if v is not None)
        return Finding(
            rule=r.id, fault=r.fault, severity=r.severity, group=group,
            time=hit.time if hit.time is not None else t, source=Where(*hit.where),
            message=hit.message, advice=r.advice.strip(), actions=tuple(r.actions),
            evidence=tuple(hit.evidence[:MAX_EVIDENCE]), explanation=hit.explanation,
            realert_s=r.realert)

    # --- state across restarts and reloads ---------------------------------------------------
    def state(self) -> dict[str, Any]:
        rules: dict[str, Any] = {}
        for x in self.compiled:
            if not x.groups:
                continue
            groups = []
            for key, held in x.groups.items():
                if x.cond.timed:
                    groups.append([list(key), {"st": x.cond.dump(held)}])
                else:
                    groups.append([list(key), {"st": x.cond.dump(held.st), "seen": held.seen, "since": held.since,
                                               "first": _hit_json(held.first), "fired": held.fired}])
            rules[x.rule.id] = {"fingerprint": x.fingerprint, "groups": groups}
        clock = self.clock if math.isfinite(self.clock) else None
        return json_safe({"version": STATE_VERSION, "clock": clock, "rules": rules})

    def restore(self, state: dict[str, Any]) -> None:
        """Take back saved state; rules that changed (or are gone) start afresh."""
        if not state or state.get("version") != STATE_VERSION:
            return
        if state.get("clock") is not None:
            self.clock = max(self.clock, float(state["clock"]))
        saved = state.get("rules", {})
        for x in self.compiled:
            mine = saved.get(x.rule.id)
            if not mine or mine.get("fingerprint") != x.fingerprint:
                continue
            for key, data in mine["groups"]:
                if x.cond.timed:
                    progress = x.cond.load(data["st"])
                    if progress is not None:
                        x.groups[tuple(key)] = progress
                        x.next_deadline = min(x.next_deadline, x.cond.deadline(progress))  # type: ignore[attr-defined]
                else:
                    x.groups[tuple(key)] = Held(x.cond.load(data["st"]), float(data.get("seen") or 0.0),
                                                data.get("since"), _hit_from(data.get("first")),
                                                bool(data.get("fired")))


def _subsume(literal_rules: dict[Literal, set[int]]) -> dict[Literal, set[int]]:
    """A literal that contains a shorter one of the same case rule is redundant: the shorter
    one's presence is checked anyway, so it carries the longer one's rules (fewer scans)."""
    out: dict[Literal, set[int]] = {}
    ordered = sorted(literal_rules, key=lambda lit: len(lit.text))
    for lit in ordered:
        shorter = next((s for s in out if s.folded == lit.folded and s.text in lit.text), None)
        if shorter is not None:
            out[shorter] |= literal_rules[lit]
        else:
            out[lit] = set(literal_rules[lit])
    return out


def _event_time(ev: Event, fallback: float) -> float:
    t = ev.get("@timestamp")
    if type(t) is float and -1e15 < t < 1e15:  # the usual case, NaN and inf fail the range
        return t
    for name in ("@timestamp", "event.ingested"):
        t = ev.get(name)
        if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t):
            return float(t)
    return fallback if math.isfinite(fallback) else 0.0


def _hit_json(hit: c.Hit | None) -> dict[str, Any] | None:
    if hit is None:
        return None
    return {"message": hit.message, "where": list(hit.where), "evidence": list(hit.evidence),
            "explanation": hit.explanation, "time": hit.time}


def _hit_from(data: dict[str, Any] | None) -> c.Hit | None:
    if not data:
        return None
    return c.Hit(data["message"], tuple(data["where"]), tuple(data["evidence"]),
                 dict(data["explanation"]), data.get("time"))


def json_safe(x: Any) -> Any:
    """Plain data that strict JSON takes: non-finite floats become text ('nan', 'inf'), tuples
    lists, anything else its str (windows only hold finite values, so no state is lost)."""
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)
