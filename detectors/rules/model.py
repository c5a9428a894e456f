"""The rule file, as typed pydantic models: what a rule may say, checked when the file is read.

The models are the single source of truth for the language: the loader validates with them and
`rules schema` prints their JSON Schema for editors. Conditions are data, never code.
"""
from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema, field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from faultwarden.detectors.finding import FAULTS
from faultwarden.detectors.rules import regex

RULE_FAULTS = tuple(f for f in FAULTS if f != "anomaly")  # `anomaly` belongs to the isolation forest
ACTIONS = ("restart", "restore", "notify")
CONDITIONS = ("match", "not_finite", "threshold", "spike", "flatline", "change", "outlier")
DEFAULT_REALERT_S = 3600.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(value: Any) -> float:
    """`30s`, `10m`, `1.5h`, `2d`, `500ms`, or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m or 1h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(f"expected a duration such as 30s, 10m or 1h, got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": _DURATION.pattern}, {"type": "number", "exclusiveMinimum": 0}],
                    "description": "30s, 10m, 1h, 2d, 500ms, or seconds"}),
    PlainSerializer(lambda s: s, return_type=float),
]
FieldName = Annotated[str, Field(min_length=1, pattern=r"^[@A-Za-z_][\w@.\-]*$",
                                 description="An event's dotted field name, e.g. ml.loss")]
Number = Union[int, float]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- match ---------------------------------------------------------------------------------
MATCH_KEYS = frozenset({"all", "any", "not", "message"})
BARE_FIELDS = frozenset({"message", "tags", "@timestamp"})  # the event fields without a dot
class FieldTest(Strict):
    """Tests on one field; several in one mapping must all hold."""

    equals: Any = None
    in_: list[Any] | None = Field(None, alias="in", min_length=1)
    regex: str | None = Field(None, description="Python (or RE2) regex, searched anywhere in the value")
    exists: bool | None = None
    finite: bool | None = Field(None, description="true: a finite number; false: NaN or ±inf")
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None

    @field_validator("regex")
    @classmethod
    def _safe_regex(cls, v: str | None) -> str | None:
        if v is not None:
            regex.check(v)
        return v

    @model_validator(mode="after")
    def _one_test_at_least(self) -> "FieldTest":
        if not self.model_fields_set:
            raise ValueError("needs a test: equals, in, regex, exists, finite, gt, gte, lt or lte")
        return self


class Match(BaseModel):
    """Field name → tests; `message` tests the event's text; `all`, `any`, `not` combine.

    Every key of one mapping must hold (an implicit `all`)."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True,
                              json_schema_extra={"propertyNames": {"pattern": r"^[@A-Za-z_][\w@.\-]*$"}})
    __pydantic_extra__: dict[str, FieldTest] = Field(init=False)

    all: list[Match] | None = Field(None, min_length=1)
    any: list[Match] | None = Field(None, min_length=1)
    not_: Match | None = Field(None, alias="not")
    message: FieldTest | None = Field(
        None, description="The event's text: `message`, plus `error.message` and "
                          "`error.stack_trace` when the parser split a traceback out")

    @model_validator(mode="before")
    @classmethod
    def _no_bare_field(cls, data: Any) -> Any:
        # Event fields are dotted ECS names; `message`, `tags` and `@timestamp` are the only
        # bare ones. A bare key here is a typo (`mesage`, `anyy`) that would otherwise be read
        # as a test on a field no event has: a rule that silently never fires.
        if isinstance(data, dict):
            for key in data:
                if isinstance(key, str) and "." not in key and key not in MATCH_KEYS and key not in BARE_FIELDS:
                    raise PydanticCustomError(
                        "unknown_field", "'{key}' is not a match key ({keys}) nor an event field (those are "
                        "dotted: log.level, ml.loss, labels.run_id)",
                        {"key": key, "keys": ", ".join(sorted(MATCH_KEYS))})
        return data

    @model_validator(mode="after")
    def _not_empty(self) -> "Match":
        if not self.model_fields_set and not self.model_extra:
            raise ValueError("an empty match; give a field test, message, all, any or not")
        return self

    @property
    def fields(self) -> dict[str, FieldTest]:
        return dict(self.model_extra or {})


# --- the other conditions --------------------------------------------------------------------
class NotFinite(Strict):
    """Fires when the field holds NaN or ±inf."""

    field: FieldName | list[FieldName]

    @property
    def field_names(self) -> list[str]:
        return [self.field] if isinstance(self.field, str) else list(self.field)


Agg = Literal["count", "mean", "max", "min", "p95", "p99", "sum"]


class Threshold(Strict):
    """An aggregate of a field over a window (time or event count) above or below a bound."""

    field: FieldName | None = Field(None, description="Required unless agg is count")
    agg: Agg = "count"
    window: Duration | None = None
    window_events: int | None = Field(None, ge=1, le=100_000)
    above: Number | None = None
    below: Number | None = None
    min_events: int = Field(1, ge=1, description="Events in the window before the bound is judged")
    where: Match | None = Field(None, description="Only events that match count")

    @model_validator(mode="after")
    def _shape(self) -> "Threshold":
        if (self.window is None) == (self.window_events is None):
            raise ValueError("give exactly one of window (a duration) or window_events (a count)")
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        if self.agg != "count" and self.field is None:
            raise ValueError(f"agg {self.agg} needs a field")
        if self.field is None and self.where is None:
            raise ValueError("count needs a field to count, or a where to select events")
        return self


Direction = Literal["up", "down", "both"]


class Spike(Strict):
    """A value far from the field's own recent history (robust z: median and MAD)."""

    field: FieldName
    window_events: int = Field(50, ge=5, le=10_000)
    z: float = Field(6.0, gt=0)
    warmup: int = Field(20, ge=3)
    direction: Direction = "up"
    min_relative_change: float = Field(
        0.0, ge=0, description="Also require |value - median| >= this fraction of |median|")

    @model_validator(mode="after")
    def _warmup_fits(self) -> "Spike":
        if self.warmup > self.window_events:
            raise ValueError(f"warmup ({self.warmup}) cannot exceed window_events ({self.window_events})")
        return self


class Flatline(Strict):
    """No event carrying the field, or no change of its value, for a duration: a hang."""

    field: FieldName
    for_: Duration = Field(alias="for")
    until: Match | None = Field(None, description="An event that ends the watch (the job finished)")


class Change(Strict):
    """The field's value changed from the previous one in the group."""

    field: FieldName
    direction: Literal["up", "down", "any"] = "any"


class Outlier(Strict):
    """One member (e.g. one rank) far from the median of its peers."""

    field: FieldName
    across: FieldName
    z: float = Field(4.0, gt=0)
    min_members: int = Field(3, ge=3)
    window: Duration = 60.0
    direction: Direction = "both"
    min_relative_change: float = Field(0.0, ge=0)


class Examples(Strict):
    """Raw log text run through the real parser: each item is one scenario (several lines allowed)."""

    fire: list[str] = []
    quiet: list[str] = []


RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.\-]*$", max_length=100,
                              description="Lower-case, e.g. cuda-oom")]
Fault = Literal[RULE_FAULTS]  # type: ignore[valid-type]


class Rule(Strict):
    id: RuleId
    fault: Fault
    severity: Literal["info", "warning", "error", "critical"]
    description: str = ""
    advice: str = ""
    match: Match | None = None
    not_finite: NotFinite | None = None
    threshold: Threshold | None = None
    spike: Spike | None = None
    flatline: Flatline | None = None
    change: Change | None = None
    outlier: Outlier | None = None
    group_by: list[FieldName] = []
    for_: Duration | None = Field(None, alias="for", description="How long the condition must hold")
    realert: Duration = Field(DEFAULT_REALERT_S, description="Quiet period before alerting again")
    labels: dict[str, str] = {}
    actions: list[Literal["restart", "restore", "notify"]] = []
    enabled: bool = True
    override: bool = Field(False, description="Replace an earlier rule of the same id")
    examples: Examples = Examples()

    @field_validator("fault", mode="before")
    @classmethod
    def _not_anomaly(cls, v: Any) -> Any:
        if v == "anomaly":
            raise ValueError("`anomaly` is raised by the isolation forest, not by rules")
        return v

    @field_validator("actions")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("an action is listed twice")
        return v

    @model_validator(mode="after")
    def _one_condition(self) -> "Rule":
        given = [c for c in CONDITIONS if getattr(self, c) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a rule needs exactly one condition ({', '.join(CONDITIONS)}), got "
                + (" and ".join(given) if given else "none"))
        if self.flatline is not None and self.for_ is not None:
            raise ValueError("flatline has its own `for`; the rule-level `for` does not apply")
        return self

    @property
    def kind(self) -> str:
        return next(c for c in CONDITIONS if getattr(self, c) is not None)

    @property
    def condition(self) -> BaseModel:
        return getattr(self, self.kind)


class Switch(Strict):
    """Turns an earlier rule off (or on again) by id, without restating it."""

    id: RuleId
    enabled: bool
    override: bool = True


class RuleFile(Strict):
    """One rule file: a list of rules (the JSON Schema editors use)."""

    rules: list[Union[Rule, Switch]]


SWITCH_KEYS = frozenset({"id", "enabled", "override"})


def json_schema() -> dict[str, Any]:
    schema = RuleFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "faultwarden rule file"
    return schema
