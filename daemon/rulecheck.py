"""Checking rules against log text: each rule's own `examples` (`rules validate`), and
promtool-style test files (`rules test`). Both parse the text with the real parser and run the
same detectors and incident book as `diagnose`, so a passing example is a promise about the
daemon, not about a test double.

A test file:

    tests:
      - name: OOM after a NaN
        rules: [cuda-oom, nan-loss]     # optional: only these rules run (default: all)
        input:                          # log lines; `{at: 10m, line: ...}` sets a line's time
          - "{'loss': nan, 'epoch': 0.5}"
          - {at: 10m, line: "torch.OutOfMemoryError: CUDA out of memory."}
        expect:                         # incidents by rule; rules not listed are not checked
          - {rule: nan-loss}
          - {rule: cuda-oom, count: 1}
          - {rule: training-hang, count: 0}

Lines without a time of their own are one second after the record before; `at` counts from
2024-05-01T12:00:00Z, where input without times begins; a line's own timestamp always wins.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from faultwarden.detectors import yamlfile
from faultwarden.detectors.rules import LoadedRule, Rule, RuleEngine, RuleSet
from faultwarden.detectors.rules.model import parse_duration
from faultwarden.detectors.yamlfile import FileError

EXAMPLE_START = 1_714_564_800.0  # 2024-05-01T12:00:00Z: where example text without times begins
EXAMPLE_HOST = "example-host"


def parse_text(lines: Iterable[tuple[str, float | None]], path: str) -> list[dict[str, Any]]:
    """Log lines (each with an optional offset in seconds from the start) → events, parsed by
    the real parser; a line without a time of its own is a second after the one before."""
    from faultwarden.daemon.parse import Parser

    parser = Parser(None, host=EXAMPLE_HOST)
    events: list[dict[str, Any]] = []
    clock, offset = EXAMPLE_START - 1.0, 0
    for line_no, (line, at) in enumerate(lines, 1):
        clock = EXAMPLE_START + at if at is not None else clock + 1.0
        for event in parser.feed(line, path=path, offset=offset, line_no=line_no, now=clock):
            clock = event["@timestamp"]  # a record's own time moves the clock (as in read_file)
            events.append(event)
        offset += len(line.encode()) + 1
    events.extend(parser.flush())
    return events


def incidents_by_rule(rules: list[Rule], events: list[dict[str, Any]]) -> Counter:
    from faultwarden.daemon.diagnose import detect

    pipeline = detect(events, [RuleEngine(rules)])
    return Counter(i.rule for i in pipeline.book.incidents.values())


# --- examples --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExampleResult:
    rule: str
    origin: str  # file:line of the example
    expect: str  # "fire" or "quiet"
    index: int
    ok: bool
    incidents: int

    def describe(self) -> str:
        got = f"{self.incidents} incident{'s' if self.incidents != 1 else ''}" if self.incidents else "nothing"
        want = "fire" if self.expect == "fire" else "stay quiet"
        return (f"{self.origin}: rule {self.rule}: examples.{self.expect}[{self.index}] should "
                f"{want}, got {got}")


def check_examples(ruleset: RuleSet) -> list[ExampleResult]:
    """Every example of every rule (turned-off rules too: their examples still document them)."""
    results: list[ExampleResult] = []
    for entry in ruleset.entries:
        for expect in ("fire", "quiet"):
            for i, example in enumerate(getattr(entry.rule.examples, expect)):
                results.append(_run_example(entry, expect, i, example))
    return results


def _run_example(entry: LoadedRule, expect: str, i: int, example: str) -> ExampleResult:
    rule = entry.rule.model_copy(update={"enabled": True})
    events = parse_text(((line, None) for line in example.splitlines()), f"<{rule.id} example>")
    n = incidents_by_rule([rule], events)[rule.id]
    ok = n > 0 if expect == "fire" else n == 0
    line = entry.example_lines.get((expect, i), entry.line)
    return ExampleResult(rule.id, f"{entry.path}:{line}" if line else entry.path, expect, i, ok, n)


# --- test files ------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TimedLine(_Strict):
    at: float = Field(ge=0, description="Seconds (or 10s, 5m, ...) after 2024-05-01T12:00:00Z")
    line: str

    @field_validator("at", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration(v) if isinstance(v, str) else v


class Expect(_Strict):
    rule: str
    count: int = Field(1, ge=0, description="Incidents this rule opens")


class Case(_Strict):
    name: str
    rules: list[str] | None = None
    input: list[str | TimedLine] = Field(min_length=1)
    expect: list[Expect] = Field(min_length=1)


class TestFile(_Strict):
    tests: list[Case] = Field(min_length=1)


@dataclass(frozen=True)
class CaseResult:
    file: str
    name: str
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.failures


def run_test_file(path: str, ruleset: RuleSet) -> list[CaseResult]:
    """Raises FileError for a malformed test file or a rule id the rule set lacks."""
    doc = yamlfile.read(path)
    spec = yamlfile.load(TestFile, doc, doc.data if doc.data is not None else {})
    known = {e.id: e.rule.model_copy(update={"enabled": True}) for e in ruleset.entries}
    results = []
    for n, case in enumerate(spec.tests):
        named = [("rules", k, rid) for k, rid in enumerate(case.rules or [])]
        named += [("expect", k, x.rule) for k, x in enumerate(case.expect)]
        for key, k, rid in named:
            if rid not in known:
                raise FileError(path, doc.line_of(("tests", n, key, k)), f"tests[{n}].{key}[{k}]",
                                f"no rule with id {rid!r} is loaded")
        rules = [known[r] for r in case.rules] if case.rules else [e.rule for e in ruleset.entries if e.enabled]
        lines = [(x, None) if isinstance(x, str) else (x.line, float(x.at)) for x in case.input]
        flat = [(part, at if j == 0 else None) for text, at in lines for j, part in enumerate(text.splitlines() or [""])]
        counts = incidents_by_rule(rules, parse_text(flat, path))
        failures = tuple(f"rule {x.rule}: expected {x.count} incident(s), got {counts[x.rule]}"
                         for x in case.expect if counts[x.rule] != x.count)
        results.append(CaseResult(path, case.name, failures))
    return results
