"""Templates fill argv elements, never a shell command line.

`actions.restore.resume` and `actions.restart.command` are argv lists; `{name}` inside an
element is replaced by plain text in one pass (a value that itself holds `{step}` or `$(...)`
stays literal text), and each element stays one argument to `execve`. So a run id, a checkpoint
path or any other text that came from a log cannot add arguments or run commands.

Names: `{checkpoint}` and `{step}` (the checkpoint resumed from), `{incident}`, `{run_id}` (the
incident's `labels.run_id`, else the supervised run's id), every field the incident is grouped
by under its dotted name (`{host.name}`, `{labels.slurm_job_id}`), and a `labels.` field also
under its short name (`{slurm_job_id}`). An unknown name is left as written.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)\}")


def fill(parts: Iterable[str], values: Mapping[str, str]) -> list[str]:
    return [PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), part) for part in parts]


def values(group: Mapping[str, Any] | None = None, *, incident: str | None = None,
           run_id: str | None = None, checkpoint: Any = None, step: int | None = None) -> dict[str, str]:
    """What the placeholders stand for (only the names that have a value)."""
    out: dict[str, str] = {}
    for key, value in (group or {}).items():
        if value is None:
            continue
        out[key] = str(value)
        if key.startswith("labels."):
            out.setdefault(key[len("labels."):], str(value))
    if run_id is not None:
        out.setdefault("run_id", run_id)
    for key, value in (("incident", incident), ("checkpoint", checkpoint), ("step", step)):
        if value is not None:
            out[key] = str(value)
    return out
