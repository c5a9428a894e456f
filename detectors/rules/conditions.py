"""The condition types, each a small evaluator over one group's state.

`observe(state, event, t)` answers for one event of the group: a `Hit` (the condition holds, with
the numbers that show it), `False` (it was judged and does not hold: a `for:` clock restarts), or
`None` (the event says nothing about it). State is plain data so the engine can save it as JSON.
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from faultwarden.detectors.finding import Event
from faultwarden.detectors.rules import match as m
from faultwarden.detectors.rules import regex
from faultwarden.detectors.rules.model import Flatline, Match, NotFinite, Outlier, Spike, Threshold

MAX_LINE = 2000  # evidence lines are capped: a 50 kB traceback stays readable
MAX_WINDOW = 100_000  # a time window keeps at most this many values (memory and state size)
MAD_SCALE = 1.4826  # MAD x this estimates the standard deviation of normal data
MAD_FLOOR = 0.01  # a perfectly flat history must not turn a tiny wiggle into an infinite z
WhereT = tuple[Any, Any, Any]  # (log.file.path, log.file.line, log.offset) of an event


@dataclass
class Hit:
    message: str
    where: WhereT
    evidence: tuple[str, ...]
    explanation: dict[str, Any] = field(default_factory=dict)
    time: float | None = None  # when the fault became true, if not the event's own time


def where(ev: Event) -> WhereT:
    return ev.get("log.file.path"), ev.get("log.file.line"), ev.get("log.offset")


def line(ev: Event) -> str:
    return clip(ev.get("message"))


def clip(text: Any) -> str:
    """An event's message as evidence: text, at most MAX_LINE characters."""
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    return text if len(text) <= MAX_LINE else text[:MAX_LINE] + " …"


def number(v: Any) -> float | None:
    """A finite number from the event, or None (missing, text, bool, NaN, inf)."""
    if type(v) is float:  # the usual case first: `v - v` is 0.0 exactly when v is finite
        return v if v - v == 0.0 else None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        v = float(v)
    except OverflowError:  # an int beyond any float (a dict line can hold 10**400)
        return None
    return v if math.isfinite(v) else None


def show(x: Any) -> Any:
    """A value for the explanation: JSON has no NaN or inf, so those become text."""
    if isinstance(x, float):
        return repr(x) if not math.isfinite(x) else round(x, 6)
    return x


def fmt_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def robust_z(value: float, sorted_values: list[float], min_relative: float) -> tuple[float, float, float] | None:
    """(z, median, MAD) of `value` against `sorted_values`, or None when it cannot be a hit
    because the change is below `min_relative` of the median."""
    med = median(sorted_values)
    dev = value - med
    if abs(dev) < min_relative * abs(med):
        return None
    mad = median(sorted(abs(x - med) for x in sorted_values))
    scale = max(MAD_SCALE * mad, MAD_FLOOR * abs(med), 1e-12)
    return dev / scale, med, mad


def judge(value: float, sorted_values: list[float], spec: Spike | Outlier) -> tuple[float, float, float, str] | None:
    """(z, median, MAD, "above"/"below") when `value` is as far from `sorted_values` as the
    spec asks (its z, direction and min_relative_change), else None."""
    found = robust_z(value, sorted_values, spec.min_relative_change)
    if found is None:
        return None
    z, med, mad = found
    if abs(z) < spec.z or not _direction_ok(spec.direction, z):
        return None
    return z, med, mad, "above" if z > 0 else "below"


def median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def _direction_ok(direction: str, z: float) -> bool:
    return z > 0 if direction == "up" else z < 0 if direction == "down" else True


class Condition:
    """Base: stateless unless a subclass says otherwise."""

    needs: m.Needs = None
    accepts: Callable[[Event], bool] | None = None  # a cheap test before the group is looked up
    stateless = False
    timed = False  # has deadlines that pass with no event (flatline)

    def new(self) -> Any:
        return None

    def observe(self, st: Any, ev: Event, t: float) -> Hit | bool | None:
        raise NotImplementedError

    def dump(self, st: Any) -> Any:
        return st

    def load(self, data: Any) -> Any:
        return data


class OneField(Condition):
    """A condition on one field (`spec.field`): only events carrying it can matter."""

    def __init__(self, spec: Any):
        self.spec = spec
        self.needs = frozenset({spec.field})


class MatchCond(Condition):
    stateless = True

    def __init__(self, spec: Match):
        self.pred = m.compile_match(spec)
        self.needs = m.match_needs(spec)
        text_regex = m.first_text_regex(spec)
        self.quote = regex.compile(text_regex).search if text_regex else None

    def observe(self, st: Any, ev: Event, t: float) -> Hit | bool:
        if not self.pred(ev):
            return False
        text = m.event_text(ev)
        found = self.quote(text) if self.quote else None
        if found is not None:
            start = text.rfind("\n", 0, found.start()) + 1
            end = text.find("\n", found.end())
            quoted = text[start:end if end >= 0 else len(text)].strip()
            explanation = {"matched": found.group(0)[:200]}
        else:
            quoted = next((s.strip() for s in text.splitlines() if s.strip()), "")
            explanation = {}
        return Hit(quoted[:300], where(ev), (line(ev),), explanation)


class NotFiniteCond(Condition):
    stateless = True

    def __init__(self, spec: NotFinite):
        self.fields = spec.field_names
        self.needs = frozenset(self.fields)

    def observe(self, st: Any, ev: Event, t: float) -> Hit | bool | None:
        judged = False
        for name in self.fields:
            v = ev.get(name)
            if isinstance(v, str) and v.strip().lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
                v = float(v.strip().lower().replace("infinity", "inf"))
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            judged = True
            if isinstance(v, float) and not math.isfinite(v):  # an int is finite however large
                explanation = {"field": name, "value": show(float(v))}
                at = ""
                for progress in ("ml.step", "ml.epoch"):  # where in training it happened
                    if ev.get(progress) is not None:
                        explanation[progress.removeprefix("ml.")] = ev[progress]
                        at = at or f" at {progress.removeprefix('ml.')} {ev[progress]}"
                return Hit(f"{name} is {v}{at}", where(ev), (line(ev),), explanation)
        return False if judged else None


# --- threshold -----------------------------------------------------------------------------
ORDER_AGGS = {"max", "min", "p95", "p99"}


class Sorted:
    """The values of a window in order, as a list of sorted chunks of at most 2 x LOAD values.

    A busy service keeps tens of thousands of latencies in a 5-minute window; in one plain
    sorted list every event would move all of them twice (insert the new, delete the oldest).
    Here an event moves at most one chunk; max, min and the percentiles near either end are
    found by walking a few chunks from that end."""

    LOAD = 1000

    def __init__(self) -> None:
        self.chunks: list[list[float]] = []
        self.maxes: list[float] = []  # the last (largest) value of each chunk
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def add(self, value: float) -> None:
        self.n += 1
        if not self.chunks:
            self.chunks.append([value])
            self.maxes.append(value)
            return
        i = bisect_left(self.maxes, value)  # the first chunk whose largest is >= value
        if i == len(self.chunks):
            i -= 1
            chunk = self.chunks[i]
            chunk.append(value)
            self.maxes[i] = value
        else:
            chunk = self.chunks[i]
            insort(chunk, value)
        if len(chunk) > 2 * self.LOAD:
            upper = chunk[self.LOAD:]
            del chunk[self.LOAD:]
            self.chunks.insert(i + 1, upper)
            self.maxes.insert(i + 1, upper[-1])
            self.maxes[i] = chunk[-1]

    def remove(self, value: float) -> None:
        """`value` must be in the window (it was added and not removed since)."""
        i = bisect_left(self.maxes, value)
        chunk = self.chunks[i]
        del chunk[bisect_left(chunk, value)]
        self.n -= 1
        if chunk:
            self.maxes[i] = chunk[-1]
        else:
            del self.chunks[i]
            del self.maxes[i]

    def __getitem__(self, k: int) -> float:
        """The k-th smallest (negative k: from the largest, as for a list)."""
        if k < 0:
            k += self.n
        if not 0 <= k < self.n:
            raise IndexError(k)
        if k < self.n // 2:
            for chunk in self.chunks:
                if k < len(chunk):
                    return chunk[k]
                k -= len(chunk)
        k = self.n - 1 - k  # from the top: p95/p99 and max live there
        for chunk in reversed(self.chunks):
            if k < len(chunk):
                return chunk[len(chunk) - 1 - k]
            k -= len(chunk)
        raise IndexError(k)  # pragma: no cover - n and the chunks always agree


@dataclass
class Window:
    entries: deque = field(default_factory=deque)  # (t, value, where)
    ordered: Sorted = field(default_factory=Sorted)  # the values in order, for max/min/percentiles
    total: float = 0.0
    tail: deque = field(default_factory=lambda: deque(maxlen=5))  # last raw lines, for evidence


class ThresholdCond(Condition):
    def __init__(self, spec: Threshold):
        self.spec = spec
        self.where = m.compile_match(spec.where) if spec.where is not None else None
        self.needs = frozenset({spec.field}) if spec.field else m.match_needs(spec.where)  # type: ignore[arg-type]
        self.ordered = spec.agg in ORDER_AGGS
        if self.where is not None:
            self.accepts = self.where
        self.limit = spec.window_events or MAX_WINDOW
        self.bound = spec.above if spec.above is not None else spec.below
        self.span = (f"the last {spec.window_events} events" if spec.window_events
                     else fmt_duration(spec.window or 0))

    def new(self) -> Window:
        return Window()

    def observe(self, w: Window, ev: Event, t: float) -> Hit | bool | None:
        spec = self.spec
        if self.where is not None and not self.where(ev):
            return None
        if spec.agg == "count":
            if spec.field is not None and ev.get(spec.field) is None:
                return None
            value = 1.0
        else:
            value = number(ev.get(spec.field))  # type: ignore[arg-type]
            if value is None:
                return None
        self._add(w, t, value, where(ev))
        w.tail.append(line(ev))
        if spec.window is not None:
            self._evict_older(w, t - spec.window)
        n = len(w.entries)
        if n < spec.min_events:
            return False
        agg = self.aggregate(w)
        holds = agg > self.bound if spec.above is not None else agg < self.bound  # type: ignore[operator]
        if not holds:
            return False
        side = "above" if spec.above is not None else "below"
        what = spec.field or "matching events"
        return Hit(
            f"{spec.agg} of {what} over {self.span} is {agg:.6g} ({side} {self.bound:g})",
            w.entries[0][2], tuple(w.tail),
            {"agg": spec.agg, "field": spec.field, "value": show(agg), side: self.bound,
             "window": self.span, "events": n})

    def aggregate(self, w: Window) -> float:
        agg, n = self.spec.agg, len(w.entries)
        if agg == "count":
            return float(n)
        if agg == "sum":
            return w.total
        if agg == "mean":
            return w.total / n
        s = w.ordered
        if agg == "max":
            return s[-1]
        if agg == "min":
            return s[0]
        q = 0.95 if agg == "p95" else 0.99
        return s[max(0, math.ceil(q * n) - 1)]  # nearest rank

    def _add(self, w: Window, t: float, value: float, wh: WhereT) -> None:
        w.entries.append((t, value, wh))
        w.total += value
        if self.ordered:
            w.ordered.add(value)
        if len(w.entries) > self.limit:
            self._drop_oldest(w)

    def _drop_oldest(self, w: Window) -> None:
        _, value, _ = w.entries.popleft()
        w.total -= value
        if self.ordered:
            w.ordered.remove(value)
        if not w.entries:
            w.total = 0.0  # no drift survives an empty window

    def _evict_older(self, w: Window, cutoff: float) -> None:
        while w.entries and w.entries[0][0] <= cutoff:
            self._drop_oldest(w)

    def dump(self, w: Window) -> Any:
        return {"entries": [[t, v, list(wh)] for t, v, wh in w.entries], "tail": list(w.tail)}

    def load(self, data: Any) -> Window:
        w = Window()
        for t, v, wh in data["entries"]:
            self._add(w, t, v, tuple(wh))
        w.tail.extend(data.get("tail", []))
        return w


# --- spike ---------------------------------------------------------------------------------
@dataclass
class History:
    values: deque  # in arrival order
    ordered: list = field(default_factory=list)
    last_text: Any = ""  # the last event's message as it came: clipped only if it becomes evidence


class SpikeCond(OneField):
    def new(self) -> History:
        return History(deque())

    def __init__(self, spec: Spike):
        super().__init__(spec)
        # The least |value - median| that can be a spike, as a fraction of |median|: below it,
        # neither min_relative_change nor the MAD floor lets z reach the bound.
        self.min_fraction = max(spec.min_relative_change, spec.z * MAD_FLOOR)
        self.sign = 1 if spec.direction == "up" else -1 if spec.direction == "down" else 0

    def observe(self, h: History, ev: Event, t: float) -> Hit | bool | None:
        spec = self.spec
        value = number(ev.get(spec.field))
        if value is None:
            return None
        result: Hit | bool | None = None
        s = h.ordered
        if len(s) >= spec.warmup:
            n = len(s)  # the median, inline: this runs for every value of every series
            med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
            dev = value - med
            if (self.sign and dev * self.sign <= 0) or abs(dev) < self.min_fraction * abs(med):
                result = False
            else:
                result = self._judge(h, value, med, dev, ev)
        self._add(h, value)
        h.last_text = ev.get("message")
        return result

    def _judge(self, h: History, value: float, med: float, dev: float, ev: Event) -> Hit | bool:
        spec, s = self.spec, h.ordered
        # Cheap test before the exact MAD: z can reach the bound only if the MAD is at most
        # `limit`, so at least half the history must lie within `limit` of the median.
        limit = abs(dev) / (MAD_SCALE * spec.z)
        within = bisect_right(s, med + limit) - bisect_left(s, med - limit)
        if within < (len(s) - 1) // 2 + 1:
            return False
        far = judge(value, s, spec)
        if far is None:
            return False
        z, med, mad, side = far
        return Hit(
            f"{spec.field} {value:.6g} is {abs(z):.1f} robust z {side} its recent median {med:.6g} "
            f"(MAD {mad:.3g}, {len(s)} values)",
            where(ev), tuple(x for x in (clip(h.last_text), line(ev)) if x),
            {"field": spec.field, "value": show(value), "median": show(med), "mad": show(mad),
             "z": round(z, 2), "z_bound": spec.z, "history": len(s)})

    def _add(self, h: History, value: float) -> None:
        h.values.append(value)
        insort(h.ordered, value)
        if len(h.values) > self.spec.window_events:
            del h.ordered[bisect_left(h.ordered, h.values.popleft())]

    def dump(self, h: History) -> Any:
        return {"values": list(h.values), "last_line": clip(h.last_text)}

    def load(self, data: Any) -> History:
        h = History(deque())
        for v in data["values"]:
            self._add(h, v)
        h.last_text = data.get("last_line", "")
        return h


# --- flatline ------------------------------------------------------------------------------
@dataclass
class Progress:
    value: Any
    at: float  # event time of the last progress
    where: WhereT
    line: str
    fired: bool = False


class FlatlineCond(Condition):
    """Progress is noted per event; the silence itself is found by `expire`, called by the
    engine as (event or wall-clock) time passes."""

    timed = True

    def __init__(self, spec: Flatline):
        self.spec = spec
        self.until = m.compile_match(spec.until) if spec.until is not None else None
        until_needs = m.match_needs(spec.until) if spec.until is not None else frozenset()
        self.needs = None if until_needs is None else frozenset({spec.field}) | until_needs

    def new(self) -> Progress | None:
        return None

    def observe(self, p: Progress | None, ev: Event, t: float) -> Hit | bool | None:
        raise TypeError("flatline is driven by FlatlineCond.step and .expire")

    def step(self, p: Progress | None, ev: Event, t: float) -> Progress | None:
        """The group's new progress record (None: stop watching the group)."""
        if self.until is not None and self.until(ev):
            return None
        value = ev.get(self.spec.field)
        if value is None:
            return p
        if p is None or value != p.value:
            return Progress(value, t, where(ev), line(ev))
        return p

    def expire(self, p: Progress, now: float) -> Hit | None:
        silent = now - p.at
        if p.fired or silent < self.spec.for_:
            return None
        p.fired = True
        field_name = self.spec.field
        return Hit(
            f"no progress of {field_name} for {fmt_duration(silent)} (stuck at {p.value!r})",
            p.where, (p.line,) if p.line else (),
            {"field": field_name, "last_value": show(p.value), "last_progress_at": p.at,
             "silent_s": round(silent, 3), "for_s": self.spec.for_},
            time=p.at + self.spec.for_)

    def deadline(self, p: Progress) -> float:
        return math.inf if p.fired else p.at + self.spec.for_

    def dump(self, p: Progress | None) -> Any:
        if p is None:
            return None
        return {"value": p.value, "at": p.at, "where": list(p.where), "line": p.line, "fired": p.fired}

    def load(self, data: Any) -> Progress | None:
        if data is None:
            return None
        return Progress(data["value"], data["at"], tuple(data["where"]), data["line"], data["fired"])


# --- change --------------------------------------------------------------------------------
class ChangeCond(OneField):
    def new(self) -> dict[str, Any]:
        return {}

    def observe(self, st: dict[str, Any], ev: Event, t: float) -> Hit | bool | None:
        value = ev.get(self.spec.field)
        if value is None:
            return None
        had, before, before_text = "value" in st, st.get("value"), st.get("line", "")
        st["value"], st["line"] = value, ev.get("message")  # clipped only if it becomes evidence
        if not had or value == before:
            return False
        a, b = number(before), number(value)
        went = ("up" if b > a else "down") if a is not None and b is not None else "changed"
        if self.spec.direction != "any" and went != self.spec.direction:
            return False
        return Hit(f"{self.spec.field} went {went} from {before!r} to {value!r}", where(ev),
                   tuple(x for x in (clip(before_text), line(ev)) if x),
                   {"field": self.spec.field, "from": show(before), "to": show(value)})

    def dump(self, st: dict[str, Any]) -> Any:
        return {**st, "line": clip(st.get("line"))} if st else st


# --- outlier -------------------------------------------------------------------------------
@dataclass
class Member:
    values: deque = field(default_factory=deque)  # (t, value), oldest first
    total: float = 0.0


class OutlierCond(OneField):
    """Each member keeps its recent values (within `window`); a member's level is their mean."""

    def new(self) -> dict[Any, Member]:
        return {}

    def observe(self, members: dict[Any, Member], ev: Event, t: float) -> Hit | bool | None:
        spec = self.spec
        name, value = ev.get(spec.across), number(ev.get(spec.field))
        if name is None or value is None:
            return None
        try:
            me = members.get(name)
            if me is None:
                me = members[name] = Member()
        except TypeError:  # an unhashable member name
            return None
        me.values.append((t, value))
        me.total += value
        if len(me.values) > MAX_WINDOW:
            me.total -= me.values.popleft()[1]
        cutoff = t - spec.window
        peers: list[float] = []
        gone = []
        for key, member in members.items():
            values = member.values
            while values and values[0][0] <= cutoff:
                member.total -= values.popleft()[1]
            if not values:
                gone.append(key)
            elif member is not me:
                peers.append(member.total / len(values))
        for key in gone:
            del members[key]
        if len(peers) + 1 < spec.min_members:
            return None
        mine = me.total / len(me.values)
        peers.sort()
        far = judge(mine, peers, spec)
        if far is None:
            return False
        z, med, mad, side = far
        return Hit(
            f"{spec.field} of {spec.across}={name} is {mine:.6g}, {abs(z):.1f} robust z {side} "
            f"its {len(peers)} peers' median {med:.6g}",
            where(ev), (line(ev),),
            {"field": spec.field, "member": show(name), "value": show(mine), "peers_median": show(med),
             "peers_mad": show(mad), "z": round(z, 2), "z_bound": spec.z, "members": len(peers) + 1})

    def dump(self, members: dict[Any, Member]) -> Any:
        return [[name, [list(x) for x in m.values]] for name, m in members.items()]

    def load(self, data: Any) -> dict[Any, Member]:
        out = {}
        for name, values in data:
            out[name] = Member(deque(tuple(x) for x in values), sum(v for _, v in values))
        return out


def build(rule_kind: str, spec: Any) -> Condition:
    return {"match": MatchCond, "not_finite": NotFiniteCond, "threshold": ThresholdCond,
            "spike": SpikeCond, "flatline": FlatlineCond, "change": ChangeCond,
            "outlier": OutlierCond}[rule_kind](spec)
