"""Rule-file errors a person can act on: the first validation error of a rule, placed at the
key it is about (as written in the file: `rules[2].match.any[0].message.regex`), with a guess
for a misspelt key (`threshhold` → `threshold`, `above` → `gt`, `mesage` → `message`).
"""
from __future__ import annotations

import difflib
import re
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from faultwarden.detectors import yamlfile
from faultwarden.detectors.rules.model import BARE_FIELDS, MATCH_KEYS, FieldTest, Match, Rule
from faultwarden.detectors.yamlfile import Document, FileError


_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def readable(err: FileError) -> FileError:
    """`rules.3.match.any.0` → `rules[3].match.any[0]`; drop pydantic's "Value error, " prefix."""
    field = _INDEX.sub(r"[\1]", err.field) if err.field else err.field
    message = err.message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return FileError(err.path, err.line, field, message)


def located(doc: Document, exc: ValidationError, base: tuple) -> FileError:
    """The first error, at the key it is about, with a did-you-mean for a misspelt key."""
    first = exc.errors(include_url=False)[0]
    if first["type"] == "unknown_field":  # a bare match key: point at the key, not its mapping
        key = first["ctx"]["key"]
        loc = base + tuple(p for p in first["loc"] if not _internal(p)) + (key,)
        hint = _did_you_mean(key, sorted(MATCH_KEYS | BARE_FIELDS | set(FIELD_HINTS.values())), FIELD_HINTS)
        return readable(FileError(doc.path, doc.line_of(loc), ".".join(map(str, loc)), first["msg"] + hint))
    err = yamlfile.validation_error(doc, exc, base)
    loc, dropped = _in_document(doc, base, first)
    if dropped:  # `gt.int`, `field.constrained-str`: a union's member, not a key the user wrote
        message = err.message
        if set(dropped) & {"int", "float"}:
            message = f"Input should be a number, got {first['input']!r}"
        err = FileError(err.path, doc.line_of(base + loc), ".".join(map(str, base + loc)), message)
    err = readable(err)
    if err.message == "unknown key" and loc and isinstance(loc[-1], str):
        known = _keys_at(loc[:-1])
        if known:
            err = FileError(err.path, err.line, err.field, "unknown key" + _did_you_mean(loc[-1], known, KEY_HINTS))
    return err


def _in_document(doc: Document, base: tuple, error: dict) -> tuple[tuple, list[str]]:
    """The error's location as the user wrote it (relative to `base`), and the parts dropped:
    pydantic names a union's members in the location (`int`, `constrained-str`), which are
    no key of the file. A missing key is kept: it is what the message is about."""
    loc: tuple = ()
    dropped: list[str] = []
    parts = [p for p in error["loc"] if not _internal(p)]
    for i, part in enumerate(parts):
        last_missing = i == len(parts) - 1 and error["type"] == "missing"
        if isinstance(part, int) or last_missing or base + loc + (part,) in doc.lines:
            loc += (part,)
        else:
            dropped.append(str(part))
    return loc, dropped


def _internal(part: Any) -> bool:
    return isinstance(part, str) and part.startswith(("function-", "tagged-union"))


# Words people reach for, and the rule language's own.
KEY_HINTS = {"above": "gt", "below": "lt", "min": "gte", "max": "lte", "eq": "equals", "equal": "equals",
             "is": "equals", "one_of": "in", "pattern": "regex", "regexp": "regex", "re": "regex",
             "matches": "regex", "condition": "match", "when": "match", "groupby": "group_by",
             "duration": "for", "severity_level": "severity", "class": "fault", "name": "id"}
FIELD_HINTS = {"msg": "message", "text": "message", "level": "log.level", "loss": "ml.loss", "step": "ml.step",
               "logger": "log.logger", "host": "host.name", "hostname": "host.name", "run_id": "labels.run_id",
               "service": "service.name", "rank": "ml.rank", "error": "error.message"}


def _did_you_mean(word: str, known: list[str], hints: dict[str, str]) -> str:
    guess = hints.get(word.lower())
    if guess not in known:  # a hint only where that key is allowed (`max` is an agg, not `lte`)
        close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
        guess = close[0] if close else None
    if guess is not None:
        return f"; did you mean `{guess}`?"
    return f" (expected one of: {', '.join(known)})" if len(known) <= 12 else ""


def _keys_at(loc: tuple) -> list[str]:
    """The keys a rule may have at `loc` (relative to the rule), by walking the models."""
    model: Any = Rule
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: the list's model
        fields = {f.alias or name: f for name, f in model.model_fields.items()}
        if part in fields:
            model = _model_in(fields[part].annotation)
        elif model is Match:
            model = FieldTest  # a field name in a match holds field tests
        else:
            return []
        if model is None:
            return []
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside `Match | None`, `list[Match]`, ... (None for plain values)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
