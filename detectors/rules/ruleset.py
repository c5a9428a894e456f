"""Rule files read into a `RuleSet`: the default pack first, then each configured folder.

A later rule with an id already known must say `override: true`; `{id: x, enabled: false}` turns
an earlier rule off without restating it. Loading is pure (it only reads files), so a daemon can
try an edited folder and keep its running rules when the edit is broken (`RuleWatcher`).
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import ValidationError

from faultwarden.detectors import yamlfile
from faultwarden.detectors.rules.errors import located, readable
from faultwarden.detectors.rules.model import CONDITIONS, SWITCH_KEYS, Rule, Switch
from faultwarden.detectors.yamlfile import Document, FileError

DEFAULT_PACK = "faultwarden.rules"
RULE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedRule:
    """A rule and where it came from (after layering)."""

    rule: Rule
    path: str
    line: int | None
    switched_by: str | None = None  # the file that turned it on or off, if not its own
    example_lines: dict[tuple[str, int], int] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return self.rule.id

    @property
    def enabled(self) -> bool:
        return self.rule.enabled

    @property
    def origin(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class RuleSet:
    entries: tuple[LoadedRule, ...]
    files: tuple[str, ...]

    @property
    def rules(self) -> list[Rule]:
        """The rules that run."""
        return [e.rule for e in self.entries if e.enabled]

    def get(self, rule_id: str) -> LoadedRule:
        for e in self.entries:
            if e.id == rule_id:
                return e
        raise KeyError(rule_id)

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def load(cls, folders: list[str] | tuple[str, ...] = (), include_default: bool = True) -> "RuleSet":
        """Raises FileError naming the file, line and field of the first problem."""
        files = list(rule_files(folders, include_default))
        layered: dict[str, LoadedRule] = {}
        for path in files:
            for index, item in enumerate(read_file(path)):
                _layer(layered, item, path, index)
        return cls(tuple(layered.values()), tuple(files))


def default_pack_files() -> list[str]:
    pack = resources.files(DEFAULT_PACK)
    return sorted(str(p) for p in pack.iterdir() if p.name.endswith(RULE_SUFFIXES))


def rule_files(folders: list[str] | tuple[str, ...], include_default: bool = True) -> Iterator[str]:
    """The rule files in layering order: default pack, then each folder's files by name.

    A file named twice (the default pack's own folder given as a path, as in
    `rules validate rules/` in a checkout, or a folder listed twice) is read once, where it
    first comes: reading it again would only clash with itself."""
    seen: set[str] = set()

    def once(paths: Iterable[str]) -> Iterator[str]:
        for path in paths:
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                yield path

    if include_default:
        yield from once(default_pack_files())
    for folder in folders:
        p = Path(folder)
        if p.is_file():
            yield from once([str(p)])
        elif p.is_dir():
            yield from once(sorted(str(f) for f in p.iterdir() if f.suffix in RULE_SUFFIXES and f.is_file()))
        else:
            raise FileError(folder, None, None, "no such rule folder or file")


Entry = tuple[Rule | Switch, int | None, dict[tuple[str, int], int]]


def read_file(path: str) -> list[Entry]:
    """Every entry of one rule file, validated, with its line and its examples' lines."""
    try:
        doc = yamlfile.read(path)
    except FileError as exc:  # a duplicate key is named `rules.0.x` there: say `rules[0].x` as elsewhere
        raise readable(exc) from None
    data = doc.data
    if data is None:
        return []
    if not isinstance(data, dict) or "rules" not in data:
        raise FileError(path, 1, None, "expected a mapping with a `rules:` list")
    extra = sorted(set(data) - {"rules"})
    if extra:
        raise FileError(path, doc.line_of((extra[0],)), extra[0], "unknown key (a rule file holds `rules:` only)")
    items = data["rules"] or []
    if not isinstance(items, list):
        raise FileError(path, doc.line_of(("rules",)), "rules", "expected a list of rules")
    out: list[Entry] = []
    seen: dict[str, int | None] = {}
    for i, item in enumerate(items):
        entry = _entry(doc, item, i)
        line = doc.line_of(("rules", i))
        if entry.id in seen:
            raise FileError(path, line, f"rules[{i}].id",
                            f"duplicate id {entry.id!r}, first at line {seen[entry.id]} of this file")
        seen[entry.id] = line
        examples = {}
        if isinstance(entry, Rule):
            for kind in ("fire", "quiet"):
                for j in range(len(getattr(entry.examples, kind))):
                    examples[(kind, j)] = doc.line_of(("rules", i, "examples", kind, j)) or line
        out.append((entry, line, examples))
    return out


def _entry(doc: Document, item: Any, i: int) -> Rule | Switch:
    base = ("rules", i)
    if not isinstance(item, dict):
        raise FileError(doc.path, doc.line_of(base), f"rules[{i}]", "expected a rule (a mapping)")
    is_switch = set(item) <= SWITCH_KEYS and "enabled" in item and not set(item) & set(CONDITIONS)
    model = Switch if is_switch else Rule
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        err = located(doc, exc, base)
        rule_id = item.get("id")
        if isinstance(rule_id, str) and rule_id and not (err.field or "").endswith(".id"):
            # which rule, for a reader scanning a long file
            err = FileError(err.path, err.line, err.field, f"{err.message} (rule {rule_id})")
        raise err from None


def _layer(layered: dict[str, LoadedRule], item: Entry, path: str, index: int) -> None:
    entry, line, examples = item
    earlier = layered.get(entry.id)
    where = f"{path}:{line}" if line else path
    field = f"rules[{index}].id"
    if isinstance(entry, Switch):
        if earlier is None:
            close = difflib.get_close_matches(entry.id, list(layered), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise FileError(path, line, field,
                            f"no earlier rule {entry.id!r} to turn {'on' if entry.enabled else 'off'}{hint}")
        layered[entry.id] = replace(earlier, rule=earlier.rule.model_copy(update={"enabled": entry.enabled}),
                                    switched_by=where)
        return
    if earlier is not None and not entry.override:
        raise FileError(path, line, field, f"rule {entry.id!r} is already defined at {earlier.origin}; "
                                          "set `override: true` to replace it")
    layered[entry.id] = LoadedRule(entry, path, line, example_lines=examples)


# --- reload ------------------------------------------------------------------------------------
def _signature(folders: list[str], include_default: bool) -> tuple:
    """What changes when a rule file is edited, added or removed: cheap stat calls only."""
    sig: list[Any] = []
    for folder in folders:
        try:
            paths = list(rule_files([folder], include_default=False))
        except FileError:
            sig.append((folder, None))
            continue
        for p in paths:
            try:
                st = os.stat(p)
                sig.append((p, st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                sig.append((p, None))
    return tuple(sig)


class RuleWatcher:
    """Polled (every second or so) by the daemon: returns a new RuleSet when the rule files
    changed, the FileError when the edited files are broken (keep running the last good rules),
    and None when nothing changed. A broken edit is reported once, not on every poll."""

    def __init__(self, folders: list[str], include_default: bool = True):
        self.folders = list(folders)
        self.include_default = include_default
        self._seen = _signature(self.folders, include_default)

    def poll(self, force: bool = False) -> RuleSet | FileError | None:
        """`force`: load even when no file changed (a reload asked for by a person, SIGHUP)."""
        sig = _signature(self.folders, self.include_default)
        if sig == self._seen and not force:
            return None
        self._seen = sig
        try:
            return RuleSet.load(self.folders, self.include_default)
        except FileError as exc:
            return exc
