"""YAML files read into typed objects, with errors that name the file, line and field.

Config and rule files both come through here: the YAML is composed with PyYAML, every node's
line is remembered by its path, and a pydantic validation error is turned into
`file:line: dotted.field: message`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class FileError(Exception):
    """A file that could not be read or validated; `str()` is the one line a user sees."""

    def __init__(self, path: str | Path, line: int | None, field: str | None, message: str):
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


@dataclass
class Document:
    """Parsed YAML plus the line (1-based) of every key and item, by path."""

    path: str
    data: Any
    lines: dict[Loc, int]

    def line_of(self, loc: Loc) -> int | None:
        # The deepest known ancestor: a missing key is reported where its parent starts.
        while loc not in self.lines and loc:
            loc = loc[:-1]
        return self.lines.get(loc)


def _build(node: yaml.Node, loc: Loc, lines: dict[Loc, int], loader: yaml.SafeLoader) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise FileError(loader.name, key_node.start_mark.line + 1, ".".join(map(str, loc + (key,))),
                                "duplicate key")
            lines[loc + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, loc + (key,), lines, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, loc + (i,), lines, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def parse(text: str, path: str | Path) -> Document:
    loader = yaml.SafeLoader(text)
    loader.name = str(path)
    try:
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        data = _build(node, (), lines, loader) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise FileError(path, mark.line + 1 if mark else None, None,
                        f"not valid YAML: {exc.problem or exc}") from None
    finally:
        loader.dispose()
    return Document(str(path), data, lines)


def read(path: str | Path) -> Document:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(path, None, None, f"cannot read: {exc}") from None
    return parse(text, path)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validation_error(doc: Document, exc: ValidationError, base: Loc = ()) -> FileError:
    """The first error of `exc` as a FileError; the loc is relative to `base` in the document."""
    err = exc.errors(include_url=False)[0]
    loc = base + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "tagged-union"))))
    field = ".".join(str(p) for p in loc) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":
        pass  # our own validators already say what they got
    elif err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] != "missing" and "input" in err and not isinstance(err["input"], (dict, list)):
        msg = f"{msg}, got {_short(err['input'])}"
    return FileError(doc.path, doc.line_of(loc), field, msg)


def load(model: type[M], doc: Document, data: Any = None, base: Loc = ()) -> M:
    try:
        return model.model_validate(doc.data if data is None else data)
    except ValidationError as exc:
        raise validation_error(doc, exc, base) from None
