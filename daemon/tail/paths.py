"""Which files the sources name: glob expansion, matching one path, and the folders to watch.

A source's `paths` are plain files or globs; `**` matches any number of folders (zero included).
Relative patterns are taken from the working directory at start, `~` is the user's home.
"""
from __future__ import annotations

import glob
import os
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Iterator, Sequence

MAGIC = frozenset("*?[")


def has_magic(part: str) -> bool:
    return any(c in MAGIC for c in part)


def normalize(pattern: str) -> str:
    return os.path.abspath(os.path.expanduser(pattern))


@lru_cache(maxsize=4096)
def _match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        # `**` swallows zero or more folders.
        return any(_match(rest, path[i:]) for i in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], head) and _match(rest, path[1:])


def _parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split(os.sep) if p)


class Patterns:
    """The sources' patterns in config order; the first source whose pattern matches owns a file."""

    def __init__(self, patterns_per_source: Sequence[Sequence[str]]):
        self.items: list[tuple[str, int]] = [
            (normalize(p), index) for index, paths in enumerate(patterns_per_source) for p in paths]

    def expand(self) -> Iterator[tuple[str, int]]:
        """Every existing path the patterns name now, with its source index (may repeat a path)."""
        for pattern, index in self.items:
            if has_magic(pattern):
                for path in sorted(glob.glob(pattern, recursive=True)):
                    yield path, index
            elif os.path.lexists(pattern):
                yield pattern, index

    def source_of(self, path: str) -> int | None:
        """The index of the first source whose pattern matches `path` (no file system access)."""
        parts = _parts(normalize(path))
        for pattern, index in self.items:
            if _match(_parts(pattern), parts):
                return index
        return None

    def matches(self, path: str) -> bool:
        return self.source_of(path) is not None

    def watch_roots(self) -> set[tuple[str, bool]]:
        """The folders to watch, as (folder, recursive).

        A pattern's fixed leading folders are watched, recursively when a wildcard follows in a
        folder part. A folder that does not exist yet is stood in for by its nearest existing
        ancestor, watched alone (not recursively: that could be `/`), so its creation is seen.
        """
        roots = set()
        for pattern, _ in self.items:
            parts = pattern.split(os.sep)
            fixed = 0
            while fixed < len(parts) - 1 and not has_magic(parts[fixed]):
                fixed += 1
            base = os.sep.join(parts[:fixed]) or os.sep
            recursive = fixed < len(parts) - 1
            if os.path.isdir(base):
                roots.add((base, recursive))
                continue
            while not os.path.isdir(base):
                base = os.path.dirname(base)
            roots.add((base, False))
        return roots
