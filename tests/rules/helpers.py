"""Small builders for rule tests: rules from plain dicts, events with dotted names."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from faultwarden.detectors.rules import Rule, RuleEngine

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def rule(text: str | None = None, **fields: Any) -> Rule:
    """A rule from YAML text (or keywords); id, fault and severity default to a test rule's."""
    data = {"id": "r", "fault": "error_rate", "severity": "warning"}
    data.update(yaml.safe_load(text) if text else {})
    data.update(fields)
    return Rule.model_validate(data)


def ev(t: float = 0.0, message: str = "", **fields: Any) -> dict[str, Any]:
    """An event at T0 + t; keyword `ml__loss=1` is the field `ml.loss`."""
    out: dict[str, Any] = {"@timestamp": T0 + t, "message": message,
                           "log.file.path": "train.log", "log.file.line": int(t) + 1, "log.offset": int(t) * 10}
    out.update({k.replace("__", "."): v for k, v in fields.items()})
    return out


def run(engine: RuleEngine, events: list[dict[str, Any]]) -> list:
    return [f for e in events for f in engine.observe(e)]


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def faultwarden(*args: str) -> subprocess.CompletedProcess:
    """The installed `faultwarden` script, as a user runs it."""
    script = Path(sys.executable).with_name("faultwarden")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "faultwarden.daemon.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)
