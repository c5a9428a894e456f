"""Make a chosen checkpoint the one the job resumes from.

The job is told through argv and the environment, never through a shell: the config's
`actions.restore.resume` elements are appended to the job's command with `{checkpoint}`,
`{step}` (and the other `templates` names) filled in by plain string replacement, so a path or
any text from a log stays one argv element, and `actions.restore.resume_env` names a variable
set to the same path.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from faultwarden.daemon.actions import quarantine, templates
from faultwarden.daemon.actions.checkpoints import Checkpoint, CheckpointStore, Verdict
from faultwarden.daemon.config import Restore


def resume_args(template: list[str], ckpt: Checkpoint, names: dict[str, str] | None = None) -> list[str]:
    return templates.fill(template, {**(names or {}), "checkpoint": str(ckpt.path), "step": str(ckpt.step)})


def resume_env(settings: Restore, ckpt: Checkpoint | None) -> dict[str, str]:
    return {settings.resume_env: str(ckpt.path)} if settings.resume_env and ckpt is not None else {}


@dataclass
class Restored:
    """The outcome of one restore: what the job resumes from, what was set aside and why."""

    checkpoint: Checkpoint | None
    passed_over: list[tuple[Checkpoint, Verdict]] = field(default_factory=list)
    batch: quarantine.Batch | None = None

    def details(self) -> dict:
        out: dict = {"checkpoint": str(self.checkpoint.path) if self.checkpoint else None,
                     "step": self.checkpoint.step if self.checkpoint else None}
        if self.passed_over:
            out["unhealthy"] = {str(c.path): v.summary() for c, v in self.passed_over}
        if self.batch and self.batch.moves:
            out["quarantined"] = [m.source for m in self.batch.moves]
            out["quarantine_batch"] = self.batch.id
        return out


def roll_back(store: CheckpointStore, before_step: int | None, reason: str,
              batch_id: str | None = None, dry_run: bool = False) -> Restored:
    """Choose the newest healthy checkpoint before `before_step` and quarantine every newer one
    (after the fault, or unhealthy), so nothing resumes from them by accident."""
    chosen, passed = store.choose(before_step)
    newer = [c for c in store.find() if chosen is None or c.step > chosen.step]
    result = Restored(chosen, passed)
    if newer and not dry_run:
        result.batch = quarantine.quarantine(newer, reason, batch_id)
    return result
