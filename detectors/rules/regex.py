"""Regexes from rule files: compiled once, refused when they could take exponential time.

A rule file is written by people and runs against every log line, so one careless pattern such
as `(\\w+\\s?)*$` must not stall the daemon. With google-re2 installed (optional) patterns run in
linear time and nothing needs refusing; without it, patterns with nested unbounded quantifiers
(star height above one, the classic shape of catastrophic backtracking) are refused.

`required_literals` gives the engine a cheap prefilter: substrings of which any match must
contain at least one, so a line that holds none of them never meets the regex.
"""
from __future__ import annotations

import functools
import re
from typing import Any

try:  # optional: linear-time matching, no pattern needs refusing
    import re2 as _re2  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _re2 = None

from re import _constants as C  # noqa: N812 - the sre opcodes
from re import _parser as sre

UNBOUNDED = sre.MAXREPEAT
_REPEATS = {C.MAX_REPEAT, C.MIN_REPEAT}
_SAFE_REPEATS = {getattr(C, "POSSESSIVE_REPEAT", None)} - {None}  # no backtracking into them
MIN_LITERAL = 3  # shorter literals filter nothing


class UnsafePattern(ValueError):
    pass


def check(pattern: str) -> None:
    """Raise ValueError (with the reason a user can act on) for a pattern we will not run."""
    if _re2 is not None:
        try:
            _re2.compile(pattern)
        except Exception as exc:  # re2 raises its own error type
            raise ValueError(f"not a valid RE2 pattern: {exc}") from None
        return
    try:
        parsed = sre.parse(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regex: {exc}") from None
    if _nested_unbounded(parsed, inside=False):
        raise UnsafePattern(
            "nested unbounded quantifiers (like `(a+)+`, `(.*)*` or `(\\w+\\s?)*`) can take "
            "exponential time on a long line; rewrite the pattern without the nesting, "
            "or install google-re2 to run patterns in linear time")


def _children(op: Any, av: Any) -> list[Any]:
    if op in _REPEATS or op in _SAFE_REPEATS:
        return [av[2]]
    if op == C.SUBPATTERN:
        return [av[3]]
    if op == C.BRANCH:
        return list(av[1])
    if op in (C.ASSERT, C.ASSERT_NOT):
        return [av[1]]
    if op == getattr(C, "ATOMIC_GROUP", None):
        return [av]
    if op == C.GROUPREF_EXISTS:
        return [p for p in av[1:] if p is not None]
    return []


def _nested_unbounded(sub: Any, inside: bool) -> bool:
    for op, av in sub:
        if op in _SAFE_REPEATS or op == getattr(C, "ATOMIC_GROUP", None):
            continue  # possessive/atomic: the engine never backtracks into them
        unbounded = op in _REPEATS and av[1] == UNBOUNDED
        if unbounded and inside and _can_be_long(av[2]):
            return True
        for child in _children(op, av):
            if _nested_unbounded(child, inside or unbounded):
                return True
    return False


def _can_be_long(sub: Any) -> bool:
    """Only a body that can match something non-empty adds a level of backtracking."""
    return sub.getwidth()[1] > 0


@functools.lru_cache(maxsize=None)
def compile(pattern: str):  # noqa: A001 - mirrors re.compile
    """The compiled pattern (RE2 when installed); call `check` first."""
    return _re2.compile(pattern) if _re2 is not None else re.compile(pattern)


# --- the literal prefilter ----------------------------------------------------------------
def required_literals(pattern: str) -> tuple[frozenset[str], bool] | None:
    """(literals, case_insensitive): every match contains one of the literals (lower-cased when
    case_insensitive, to be looked up in the lower-cased text); None when no such set is known."""
    try:
        parsed = sre.parse(pattern)
    except re.error:
        return None
    ignore_case = bool(parsed.state.flags & re.IGNORECASE) or _has_local_ignorecase(parsed)
    found = _required(parsed)
    if not found or min(map(len, found)) < MIN_LITERAL:
        return None
    if ignore_case:
        if not all(s.isascii() for s in found):
            return None  # str.lower() and the regex's case folding differ outside ASCII
        found = {s.lower() for s in found}
    return frozenset(found), ignore_case


def _has_local_ignorecase(sub: Any) -> bool:
    for op, av in sub:
        if op == C.SUBPATTERN and av[1] & re.IGNORECASE:
            return True
        if any(_has_local_ignorecase(child) for child in _children(op, av)):
            return True
    return False


def _required(sub: Any) -> set[str] | None:
    """Best set of literals one of which every match of this sequence contains."""
    candidates: list[set[str]] = []
    run: list[str] = []

    def close_run() -> None:
        if run:
            candidates.append({"".join(run)})
            run.clear()

    for op, av in sub:
        if op == C.LITERAL:
            run.append(chr(av))
            continue
        close_run()
        if op == C.SUBPATTERN:
            inner = _required(av[3])
        elif op == C.BRANCH:
            parts = [_required(b) for b in av[1]]
            inner = set().union(*parts) if all(parts) else None
        elif op in _REPEATS or op in _SAFE_REPEATS:
            inner = _required(av[2]) if av[0] >= 1 else None
        elif op == getattr(C, "ATOMIC_GROUP", None):
            inner = _required(av)
        else:
            inner = None
        if inner:
            candidates.append(inner)
    close_run()
    if not candidates:
        return None
    # The most selective choice: the set whose shortest literal is longest.
    return max(candidates, key=lambda s: (min(map(len, s)), -len(s)))


_LETTERS = "etaoinsrhldcumfpgwybvkxjqz"  # most to least common, in English and in logs
MIN_ANCHOR = 4


def _commonness(ch: str) -> int:
    """How often `ch` turns up in healthy log lines (higher: more often)."""
    if ch == " ":
        return 100
    if ch in _LETTERS:
        return 90 - _LETTERS.index(ch)
    if ch.isdigit() or ch in "_.=:-,/":  # numbers, key=value, paths, times: everywhere
        return 80
    if ch.isupper():
        return 20
    return 10


def anchor(literal: str) -> str:
    """The part of `literal` to screen for: its tail from its rarest character (keeping at
    least MIN_ANCHOR characters): `"invalid argument"` → `"valid argument"`,
    `" HTTP/"` → `"HTTP/"`.

    Any substring of a required literal is required too, so the screen stays sound; starting on
    a rare character lets the regex engine skip to the few places in a line where a match can
    begin, instead of trying a branch at every space and common letter of every healthy line."""
    if len(literal) <= MIN_ANCHOR:
        return literal
    start = min(range(len(literal) - MIN_ANCHOR + 1), key=lambda i: (_commonness(literal[i]), i))
    return literal[start:]


def screen(words: list[str]) -> re.Pattern[str]:
    """One regex that finds whether any of `words` occurs, built as a trie (`C(?:UDA|UBLAS)`),
    so the engine tries one branch per character instead of every word at every position.
    A prefilter only: it says *whether*, not *which*."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}  # a word ends here

    def emit(node: dict[str, dict]) -> str:
        if "" in node:
            return ""  # this word is enough; longer words through here need not be spelled out
        alts = [re.escape(ch) + emit(child) for ch, child in sorted(node.items())]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return re.compile(emit(trie) if words else "(?!)")
