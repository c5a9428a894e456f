"""A `match` (field tests combined with all/any/not) compiled into a plain predicate, plus what
the engine needs to skip it cheaply: the fields (or text literals) without which it cannot hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from faultwarden.detectors.finding import Event
from faultwarden.detectors.rules import regex
from faultwarden.detectors.rules.model import FieldTest, Match

Predicate = Callable[[Event], bool]
TEXT_FIELDS = ("message", "error.message", "error.stack_trace")
_MISSING = object()


@dataclass(frozen=True)
class Literal:
    """An index token: the event's text contains `text` (lower-cased when `folded`)."""

    text: str
    folded: bool


Token = str | Literal  # a field name the event must carry, or a literal its text must contain
Needs = frozenset[Token] | None  # the condition can only hold if one token is present; None: can't tell


def event_text(ev: Event) -> str:
    """What `message: {regex}` searches: the message, plus the error parts a parser split out."""
    text = ev.get("message")
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    for name in TEXT_FIELDS[1:]:
        extra = ev.get(name)
        if isinstance(extra, str) and extra and extra not in text:
            text = f"{text}\n{extra}"
    return text


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v


def compile_test(name: str, test: FieldTest) -> Predicate:
    """All tests given for one field (`name`), as one predicate."""
    checks: list[Callable[[Any], bool]] = []
    given = test.model_fields_set
    if "exists" in given:
        want = bool(test.exists)
        checks.append(lambda v: (v is not _MISSING and v is not None) == want)
    if "equals" in given:
        x = test.equals
        checks.append(lambda v: v is not _MISSING and v == x)
    if "in_" in given:
        options = list(test.in_ or [])
        try:
            hashed = frozenset(options)
            checks.append(lambda v: v is not _MISSING and _hashable_in(v, hashed))
        except TypeError:
            checks.append(lambda v: v is not _MISSING and v in options)
    if "finite" in given and test.finite is not None:
        want_finite = test.finite
        checks.append(lambda v: _number(v) is not None and _finite(v) == want_finite)
    if "regex" in given and test.regex is not None:
        checks.append(_regex_check(test.regex))
    for op, bound in (("gt", test.gt), ("gte", test.gte), ("lt", test.lt), ("lte", test.lte)):
        if op in given and bound is not None:
            checks.append(_compare(op, bound))
    if name == "message" and "regex" in given:
        if len(checks) == 1:
            (only,) = checks
            return lambda ev: only(event_text(ev))
        return lambda ev: all(check(v) for v in (event_text(ev),) for check in checks)
    if len(checks) == 1:
        (only,) = checks
        return lambda ev: only(ev.get(name, _MISSING))
    return lambda ev: all(check(v) for v in (ev.get(name, _MISSING),) for check in checks)


def _regex_check(pattern: str) -> Callable[[Any], bool]:
    """A regex search, after a substring test for the literals every match contains when they
    are known: `in` is many times cheaper than a search that fails, the usual outcome."""
    search = regex.compile(pattern).search
    lits = regex.required_literals(pattern)
    if lits is None or lits[1]:  # unknown, or case-folded (a lower() per value costs as much)
        return lambda v: isinstance(v, str) and search(v) is not None
    words = tuple(lits[0])
    if len(words) == 1:
        (word,) = words
        return lambda v: isinstance(v, str) and word in v and search(v) is not None
    return lambda v: isinstance(v, str) and any(w in v for w in words) and search(v) is not None


def _finite(v: float | int) -> bool:
    return math.isfinite(v) if isinstance(v, float) else True  # an int is finite however large


def _hashable_in(v: Any, options: frozenset) -> bool:
    try:
        return v in options
    except TypeError:
        return False


def _compare(op: str, bound: float) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        x = _number(v)
        if x is None or x != x:  # NaN compares false with everything: no bound holds
            return False
        return x > bound if op == "gt" else x >= bound if op == "gte" else x < bound if op == "lt" else x <= bound
    return check


def compile_match(m: Match) -> Predicate:
    return _compile(m)[0]


def _compile(m: Match) -> tuple[Predicate, int]:
    """(predicate, cost): conjuncts and alternatives run cheapest first, so a field test
    settles most events before any regex runs."""
    parts: list[tuple[Predicate, int]] = [(compile_test(n, t), _cost(t)) for n, t in m.fields.items()]
    if m.message is not None:
        parts.append((compile_test("message", m.message), _cost(m.message)))
    if m.all is not None:
        subs = sorted((_compile(s) for s in m.all), key=lambda pc: pc[1])
        preds = [p for p, _ in subs]
        parts.append((lambda ev: all(p(ev) for p in preds), sum(c for _, c in subs)))
    if m.any is not None:
        subs = sorted((_compile(s) for s in m.any), key=lambda pc: pc[1])
        preds = [p for p, _ in subs]
        parts.append((lambda ev: any(p(ev) for p in preds), sum(c for _, c in subs)))
    if m.not_ is not None:
        inner, cost = _compile(m.not_)
        parts.append((lambda ev: not inner(ev), cost))
    parts.sort(key=lambda pc: pc[1])
    if len(parts) == 1:
        return parts[0]
    preds = [p for p, _ in parts]
    return (lambda ev: all(p(ev) for p in preds)), sum(c for _, c in parts)


def _cost(test: FieldTest) -> int:
    return 10 if test.regex is not None else 1


# --- index tokens ----------------------------------------------------------------------------
def test_needs(name: str, test: FieldTest) -> Needs:
    given = test.model_fields_set
    if "exists" in given and not test.exists and len(given) == 1:
        return None  # `exists: false` holds on events without the field
    if name == "message" and "regex" in given and test.regex is not None:
        lits = regex.required_literals(test.regex)
        if lits is not None:
            found, folded = lits
            return frozenset(Literal(s, folded) for s in found)
        return frozenset(TEXT_FIELDS)
    if name == "message":
        return frozenset({"message"})
    return frozenset({name})


def match_needs(m: Match) -> Needs:
    """Tokens one of which an event must show for `m` to possibly hold (None: no such set)."""
    conjuncts: list[Needs] = [test_needs(name, test) for name, test in m.fields.items()]
    if m.message is not None:
        conjuncts.append(test_needs("message", m.message))
    if m.all is not None:
        conjuncts.extend(match_needs(s) for s in m.all)
    if m.any is not None:
        alternatives = [match_needs(s) for s in m.any]
        conjuncts.append(None if any(a is None for a in alternatives) else frozenset().union(*alternatives))
    if m.not_ is not None:
        conjuncts.append(None)
    known = [c for c in conjuncts if c is not None]
    if not known:
        return None
    # Any one conjunct must hold, so its tokens will do: prefer the most selective one.
    return min(known, key=_breadth)


def _breadth(tokens: frozenset[Token]) -> tuple[int, int]:
    # Fields every event carries are the least selective; a literal is the most.
    common = sum(1 for t in tokens if t in ("message", "@timestamp", "log.level", "host.name"))
    return common, len(tokens)


def first_text_regex(m: Match) -> str | None:
    """The first `message` regex in `m`, for quoting the line that matched."""
    if m.message is not None and m.message.regex:
        return m.message.regex
    for sub in (m.all or []) + (m.any or []):
        found = first_text_regex(sub)
        if found:
            return found
    return None
