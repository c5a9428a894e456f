"""What the wheel carries: every package folder is listed, the rule pack is package data."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = {"daemon": "faultwarden.daemon", "detectors": "faultwarden.detectors", "model": "faultwarden.model",
       "rules": "faultwarden.rules"}


def test_every_package_folder_is_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in TOP.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == listed


def test_the_default_rule_pack_is_package_data():
    from importlib.resources import files

    packs = [p.name for p in files("faultwarden.rules").iterdir() if p.name.endswith(".yaml")]
    assert packs, "the default rule pack is missing"


def test_test_modules_have_unique_names():
    """pytest imports test folders without __init__.py by basename: two alike stop collection."""
    from collections import Counter

    names = Counter(p.name for p in (ROOT / "tests").rglob("test_*.py")
                    if not (p.parent / "__init__.py").exists())
    assert [n for n, c in names.items() if c > 1] == []
