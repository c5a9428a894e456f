"""What an anomaly model is fitted with, as plain data: it is stored in the model file and read
back from it, so a model scores new logs with exactly the windows and features it learnt on."""
from __future__ import annotations

import math
import re
import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any

# Masks applied before Drain3 mines templates: values that vary from line to line (addresses,
# numbers, ids) become one token, so `step 10 took 0.5s` and `step 11 took 0.6s` share a template.
# Order matters: the longer shapes (IP:port, hex) are masked before plain numbers.
DEFAULT_MASKS: tuple[tuple[str, str], ...] = (
    (r"((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(:\d+)?((?=[^A-Za-z0-9])|$)", "IP"),
    (r"((?<=[^A-Za-z0-9])|^)(0x[a-fA-F0-9]+)((?=[^A-Za-z0-9])|$)", "HEX"),
    (r"((?<=[^A-Za-z0-9])|^)([0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12})((?=[^A-Za-z0-9])|$)", "UUID"),
    (r"((?<=[^A-Za-z0-9])|^)([\-\+]?\d+(\.\d+)?([eE][\-\+]?\d+)?)((?=[^A-Za-z0-9])|$)", "NUM"),
)

# ml.* numbers that name where a record sits (which step, which rank), not how the job is doing:
# their level says nothing about health, and a later run always has larger steps.
POSITION_FIELDS = ("ml.step", "ml.epoch", "ml.max_steps", "ml.rank", "ml.local_rank", "ml.world_size",
                   "ml.checkpoint.step")

DEFAULT_WINDOW_EVENTS = 100


class SpecError(ValueError):
    """A spec value that cannot work; `field` names the option."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class ModelSpec:
    """How windows are cut, which features they give, and where the threshold lies."""

    name: str = "default"
    # Windows: one series per distinct value of these fields (e.g. labels.run_id, host.name) ...
    group_by: tuple[str, ...] = ()
    # ... or sessions keyed by every id this regex finds in the message (HDFS: blk_-?\d+).
    session_regex: str | None = None
    window_events: int | None = None     # close a window after this many events
    window_seconds: float | None = None  # ... or this long after its first event
    idle_seconds: float | None = None    # ... or after this long without an event (session end)
    min_events: int | None = None        # windows with fewer events are not scored (None: see resolved())
    max_open: int = 100_000              # more open windows than this: the least recently fed closes
    # Features.
    tfidf: bool = False                  # weight template counts by idf over training windows (loglizer)
    numeric_fields: tuple[str, ...] | None = None  # ml.* fields to summarise; None: all seen in training
    masks: tuple[tuple[str, str], ...] = DEFAULT_MASKS
    drain_sim_th: float = 0.4
    drain_depth: int = 4
    # The forest and the threshold (set from training windows alone).
    trees: int = 100
    max_samples: int | float | str = "auto"
    seed: int = 0
    quantile: float = 0.995              # threshold: about 1 - quantile of training windows score above
    range_margin: float = 3.0            # beyond training min/max by margin × training std: anomalous too
    range_floor: float = 0.5             # ... and, for a job metric, by this share of its size at least

    def __post_init__(self) -> None:
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            raise SpecError("name", f"use letters, digits, '.', '_' or '-', got {self.name!r}")
        if self.session_regex is not None:
            try:
                re.compile(self.session_regex)
            except re.error as exc:
                raise SpecError("session_regex", f"not a valid regular expression: {exc}") from None
        for name in ("window_events", "min_events", "trees", "max_open"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise SpecError(name, f"expected a whole number ≥ 1, got {value!r}")
        for name in ("window_seconds", "idle_seconds"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise SpecError(name, f"expected a number of seconds > 0, got {value!r}")
        if not 0.0 < self.quantile <= 1.0:
            raise SpecError("quantile", f"expected a number in (0, 1], got {self.quantile!r}")
        if not self.range_margin >= 0:
            raise SpecError("range_margin", f"expected a number ≥ 0 (inf: off), got {self.range_margin!r}")
        if not (0.0 <= self.range_floor and math.isfinite(self.range_floor)):
            raise SpecError("range_floor", f"expected a number ≥ 0, got {self.range_floor!r}")
        if not 0.0 < self.drain_sim_th <= 1.0:
            raise SpecError("drain_sim_th", f"expected a number in (0, 1], got {self.drain_sim_th!r}")
        if self.drain_depth < 3:
            raise SpecError("drain_depth", f"expected at least 3, got {self.drain_depth!r}")
        for pattern, mask in self.masks:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise SpecError("masks", f"{mask}: not a valid regular expression: {exc}") from None

    def resolved(self) -> "ModelSpec":
        """The spec with its defaults made explicit: a window rule always exists, and count windows
        do not score a short tail (its counts, scaled up, would look unusual for no reason)."""
        spec = self
        if spec.session_regex is None and spec.window_events is None and spec.window_seconds is None:
            spec = spec.replace(window_events=DEFAULT_WINDOW_EVENTS)
        if spec.min_events is None:
            spec = spec.replace(min_events=max(1, spec.window_events // 4) if spec.count_windows else 1)
        return spec

    @property
    def count_windows(self) -> bool:
        """Windows cut by count alone: their counts are rates per `window_events` events."""
        return self.window_events is not None and self.session_regex is None and self.window_seconds is None

    def replace(self, **changes: Any) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["group_by"] = list(self.group_by)
        out["masks"] = [list(m) for m in self.masks]
        out["numeric_fields"] = None if self.numeric_fields is None else list(self.numeric_fields)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(unknown[0], "unknown option")
        data = dict(data)
        if "group_by" in data:
            data["group_by"] = tuple(data["group_by"])
        if "masks" in data:
            data["masks"] = tuple((str(p), str(n)) for p, n in data["masks"])
        if data.get("numeric_fields") is not None:
            data["numeric_fields"] = tuple(data["numeric_fields"])
        return cls(**data)


def threshold_rule(spec: ModelSpec) -> str:
    """How the threshold was set, in words, for `fit` output and explanations."""
    if spec.quantile >= 1.0:
        return "the highest score of a training window"
    return f"the {spec.quantile:.4g} quantile of training window scores"


