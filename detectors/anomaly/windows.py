"""Events → feature windows, per series (group_by fields) or per session (ids found in the
message by a regex; a line joins every session it names).

A window keeps running summaries, never the events themselves, so an open window costs the
same whatever its length and its state is small JSON. It closes when it holds `window_events`
events, when `window_seconds` have passed since its first event, when its series was idle for
`idle_seconds` (session end), or at the end of the input (`flush`).

Time is event time (`@timestamp`, else `event.ingested`); `expire(now)` lets a wall clock close
idle windows in the live daemon.
"""
from __future__ import annotations

import math
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from faultwarden.detectors.anomaly.spec import POSITION_FIELDS, ModelSpec
from faultwarden.detectors.finding import Event, Where

Classify = Callable[[str], "int | None"]
"""A message → the id of its training template, or None for a template never seen in training."""

LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_ALIASES = {
    "trace": "debug", "warn": "warning", "notice": "info", "err": "error", "severe": "error",
    "fatal": "critical", "failure": "critical", "crit": "critical", "alert": "critical",
    "emerg": "critical", "emergency": "critical", "panic": "critical",
}
MAX_EXAMPLES = 3
MAX_EXAMPLE_CHARS = 300
# Fields of the first event kept in a window: enough for `Where` and for the finding's evidence.
_FIRST_FIELDS = ("@timestamp", "message", "log.file.path", "log.file.line", "log.offset")


def level_of(event: Event) -> str | None:
    raw = event.get("log.level")
    if not isinstance(raw, str):
        return None
    level = raw.strip().lower()
    level = _LEVEL_ALIASES.get(level, level)
    return level if level in LEVELS else None


def is_error(event: Event, level: str | None) -> bool:
    return level in ("error", "critical") or bool(event.get("error.type") or event.get("error.message"))


def event_time(event: Event) -> float | None:
    for name in ("@timestamp", "event.ingested"):
        value = event.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def numbers_of(event: Event) -> Iterable[tuple[str, float]]:
    """The job's health numbers in an event: ml.* ints and floats, not the position fields."""
    for name, value in event.items():
        if (name.startswith("ml.") and isinstance(value, (int, float)) and not isinstance(value, bool)
                and name not in POSITION_FIELDS):
            yield name, float(value)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[:MAX_EXAMPLE_CHARS] + "…"


@dataclass
class RunningStats:
    """mean, std, min, max, last and least-squares slope (per value, in arrival order) of one
    field in one window, kept in O(1) space. Values are shifted by the first one before the slope
    sums, so large magnitudes (memory in bytes) keep their precision."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0       # Welford's sum of squared deviations
    min: float = math.inf
    max: float = -math.inf
    last: float = 0.0
    first: float = 0.0
    sum_y: float = 0.0    # Σ (y - first)
    sum_iy: float = 0.0   # Σ i·(y - first), i = 0, 1, ...

    def add(self, y: float) -> None:
        if self.n == 0:
            self.first = y
        shifted = y - self.first
        self.sum_y += shifted
        self.sum_iy += self.n * shifted
        self.n += 1
        delta = y - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (y - self.mean)
        self.min = min(self.min, y)
        self.max = max(self.max, y)
        self.last = y

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n > 1 else 0.0

    @property
    def slope(self) -> float:
        n = self.n
        if n < 2:
            return 0.0
        sum_i = n * (n - 1) / 2
        sum_ii = (n - 1) * n * (2 * n - 1) / 6
        return (n * self.sum_iy - sum_i * self.sum_y) / (n * sum_ii - sum_i * sum_i)

    def summary(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max,
                "last": self.last, "slope": self.slope}

    def to_json(self) -> list[float]:
        return [self.n, self.mean, self.m2, self.min, self.max, self.last, self.first, self.sum_y, self.sum_iy]

    @classmethod
    def from_json(cls, data: list[float]) -> "RunningStats":
        n, *rest = data
        return cls(int(n), *map(float, rest))


@dataclass
class Window:
    """What one series did over one window, summarised as it went."""

    key: tuple
    group: dict[str, Any]
    first: dict[str, Any]
    start: float | None
    end: float | None
    events: int = 0
    errors: int = 0
    non_finite: int = 0
    levels: Counter = field(default_factory=Counter)
    templates: Counter = field(default_factory=Counter)   # training template id → count
    unseen: int = 0                                        # lines of templates never seen in training
    unseen_examples: list[str] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)
    numbers: dict[str, RunningStats] = field(default_factory=dict)
    closed_by: str | None = None

    @property
    def source(self) -> Where:
        return Where.of(self.first)

    def add(self, event: Event, template: int | None, level: str | None, t: float | None) -> None:
        self.events += 1
        if t is not None:
            self.start = t if self.start is None else min(self.start, t)
            self.end = t if self.end is None else max(self.end, t)
        if level is not None:
            self.levels[level] += 1
        message = event.get("message")
        text = message if isinstance(message, str) else ""
        if is_error(event, level):
            self.errors += 1
            if len(self.error_examples) < MAX_EXAMPLES:
                self.error_examples.append(_clip(text or str(event.get("error.message", ""))))
        if template is None:
            self.unseen += 1
            if len(self.unseen_examples) < MAX_EXAMPLES:
                self.unseen_examples.append(_clip(text))
        else:
            self.templates[template] += 1
        for name, value in numbers_of(event):
            if not math.isfinite(value):
                self.non_finite += 1   # a NaN loss is a signal of its own, not a summary value
                continue
            self.numbers.setdefault(name, RunningStats()).add(value)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": list(self.key), "group": self.group, "first": self.first, "start": self.start,
            "end": self.end, "events": self.events, "errors": self.errors, "non_finite": self.non_finite,
            "levels": dict(self.levels), "templates": {str(k): v for k, v in self.templates.items()},
            "unseen": self.unseen, "unseen_examples": self.unseen_examples,
            "error_examples": self.error_examples,
            "numbers": {k: s.to_json() for k, s in self.numbers.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Window":
        return cls(
            key=tuple(data["key"]), group=dict(data["group"]), first=dict(data["first"]),
            start=data["start"], end=data["end"], events=int(data["events"]), errors=int(data["errors"]),
            non_finite=int(data["non_finite"]), levels=Counter(data["levels"]),
            templates=Counter({int(k): int(v) for k, v in data["templates"].items()}),
            unseen=int(data["unseen"]), unseen_examples=list(data["unseen_examples"]),
            error_examples=list(data["error_examples"]),
            numbers={k: RunningStats.from_json(v) for k, v in data["numbers"].items()},
        )


class Windower:
    """Routes events to open windows and hands back the windows that closed."""

    def __init__(self, spec: ModelSpec, classify: Classify):
        self.spec = spec.resolved()
        self.classify = classify
        self.session = re.compile(self.spec.session_regex) if self.spec.session_regex else None
        # Least recently fed first: idle windows are found from the front, and `max_open` evicts there.
        self.open: OrderedDict[tuple, Window] = OrderedDict()
        self.too_short = 0      # windows closed with fewer than min_events events (not scored)
        self.unkeyed = 0        # events naming no session, in session mode (not in any window)
        self._next_scan: float | None = None

    # -- feeding -----------------------------------------------------------------------------
    def add(self, event: Event) -> list[Window]:
        t = event_time(event)
        closed = self._expire_by_event_time(t) if t is not None else []
        keys = self._keys(event)
        if not keys:
            self.unkeyed += 1
            return self._keep(closed)
        message = event.get("message")
        template = self.classify(message if isinstance(message, str) else "")
        level = level_of(event)
        for key, group in keys:
            window = self.open.get(key)
            if window is not None and t is not None:
                reason = self._time_up(window, t)
                if reason:
                    closed.append(self._close(key, reason))
                    window = None
            if window is None:
                window = Window(key, group, {k: event[k] for k in _FIRST_FIELDS if k in event}, t, t)
                self.open[key] = window
                if len(self.open) > self.spec.max_open:
                    closed.append(self._close(next(iter(self.open)), "evicted"))
            else:
                self.open.move_to_end(key)
            window.add(event, template, level, t)
            if self.spec.window_events is not None and window.events >= self.spec.window_events:
                closed.append(self._close(key, "count"))
        return self._keep(closed)

    def expire(self, now: float) -> list[Window]:
        """Close the windows whose time is up at `now` (idle sessions, old time windows)."""
        closed = []
        if self.spec.window_seconds is not None:
            for key, window in list(self.open.items()):
                reason = self._time_up(window, now)
                if reason:
                    closed.append(self._close(key, reason))
        elif self.spec.idle_seconds is not None:
            # Least recently fed first: stop at the first window that is not idle.
            while self.open:
                key, window = next(iter(self.open.items()))
                reason = self._time_up(window, now)
                if not reason:
                    break
                closed.append(self._close(key, reason))
        return self._keep(closed)

    def flush(self) -> list[Window]:
        """End of input: close every open window."""
        return self._keep([self._close(key, "end") for key in list(self.open)])

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"open": [w.to_json() for w in self.open.values()], "too_short": self.too_short,
                "unkeyed": self.unkeyed}

    def restore(self, state: dict[str, Any]) -> None:
        self.open = OrderedDict()
        for data in state.get("open", []):
            window = Window.from_json(data)
            self.open[window.key] = window
        self.too_short = int(state.get("too_short", 0))
        self.unkeyed = int(state.get("unkeyed", 0))

    # -- inside --------------------------------------------------------------------------------
    def _keys(self, event: Event) -> list[tuple[tuple, dict[str, Any]]]:
        group = {name: event.get(name) for name in self.spec.group_by}
        base = tuple(_hashable(v) for v in group.values())
        if self.session is None:
            return [(base, group)]
        message = event.get("message")
        if not isinstance(message, str):
            return []
        ids = dict.fromkeys(m.group(0) for m in self.session.finditer(message))  # unique, in order
        return [(base + (sid,), {**group, "session": sid}) for sid in ids]

    def _time_up(self, window: Window, now: float) -> str | None:
        if self.spec.window_seconds is not None and window.start is not None \
                and now - window.start >= self.spec.window_seconds:
            return "time"
        if self.spec.idle_seconds is not None and window.end is not None \
                and now - window.end >= self.spec.idle_seconds:
            return "idle"
        return None

    def _expire_by_event_time(self, t: float) -> list[Window]:
        # Other series' windows age by event time too; scanning all on every event would cost
        # O(open windows), so scan once per a fraction of the shortest time limit.
        limits = [s for s in (self.spec.window_seconds, self.spec.idle_seconds) if s is not None]
        if not limits:
            return []
        if self._next_scan is not None and t < self._next_scan:
            return []
        self._next_scan = t + min(limits) / 8
        return self.expire(t)

    def _close(self, key: tuple, reason: str) -> Window:
        window = self.open.pop(key)
        window.closed_by = reason
        return window

    def _keep(self, closed: list[Window]) -> list[Window]:
        kept = [w for w in closed if w.events >= self.spec.min_events]
        self.too_short += len(closed) - len(kept)
        return kept


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, dict, set)):
        return repr(value)
    return value
