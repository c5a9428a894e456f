"""From incident to action: restart, restore, notify, as the rule asked, once per opening or
realert; each action's outcome is written on the incident.

Notifying happens at once. Restart and restore touch the job, which the caller owns, so they are
queued (`pending`) and run when the caller is ready (`stop_job`, then `recover`): the supervised
loop first stops the job and reads the rest of its output, so nothing the old job printed can
trigger a second recovery after the new one started. A job action moves the incident to
`acting`, then `resolved` (the job runs again) or `failed` (the restart budget is used up, or
the job could not be started). Notify-only incidents stay `open`: nothing was fixed.

An incident that opens while another of the same fault and group is being acted on (the NaN
gradient norms of the steps whose NaN loss stopped the job) is covered by it: no action or
message of its own (noted `covered`, with the other's id), and it ends as the other ends.

`--dry-run` sends notifications only and notes on the incident what would have been done.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Protocol

from faultwarden.daemon import logs
from faultwarden.daemon.actions import templates
from faultwarden.daemon.actions.checkpoints import CheckpointStore
from faultwarden.daemon.actions.notify import Notice, Notifier
from faultwarden.daemon.actions.restart import RestartBudget
from faultwarden.daemon.actions.restore import Restored, resume_args, resume_env, roll_back
from faultwarden.daemon.config import Restore
from faultwarden.daemon.incidents import QUIET, Incident, IncidentBook, Update

JOB_ACTIONS = ("restore", "restart")
Observer = Callable[[str, dict], None]


class Job(Protocol):
    """The job the actions act on: the supervised child, or a configured restart command."""

    def stop(self, incidents: list[Incident]) -> dict[str, Any]: ...

    def relaunch(self, resume: list[str], env: dict[str, str], names: dict[str, str]) -> dict[str, Any]:
        """Start the job again; `resume` is already filled, `names` are the template values."""


class Result(Enum):
    RELAUNCHED = "relaunched"
    GAVE_UP = "gave_up"  # the circuit breaker opened, or the job would not start
    CANCELLED = "cancelled"  # the daemon was asked to stop during the back-off
    NOTHING = "nothing"


@dataclass
class Pending:
    incident: Incident
    action: str  # "restore" | "restart"
    step: int | None  # the first step of the fault, when known


class Dispatcher:
    def __init__(self, book: IncidentBook, *, restore: Restore, store: CheckpointStore,
                 notifier: Notifier, budget: RestartBudget, job: Job | None, dry_run: bool = False,
                 stop: threading.Event | None = None, run_id: str | None = None,
                 observer: Observer | None = None):
        self.book = book
        self.restore_settings = restore
        self.store = store
        self.notifier = notifier
        self.budget = budget
        self.job = job
        self.dry_run = dry_run
        self.stop_event = stop or threading.Event()
        self.run_id = run_id
        self.observer = observer
        self.pending: list[Pending] = []
        self.covered: dict[str, list[Incident]] = {}  # acting incident id -> incidents riding along
        self.dirty = False  # the book changed since the caller last saved it
        self.log = logs.get("faultwarden.actions")

    # --- incidents in ----------------------------------------------------------------------
    def handle(self, update: Update, step: int | None = None) -> None:
        """Act on what a finding did to the book (the pipeline's on_incident)."""
        inc = update.incident
        self.dirty = True
        if not (update.opened or update.alert) or inc.status in QUIET:
            return
        self._tell("incident", id=inc.id, fault=inc.fault, rule=inc.rule, severity=inc.severity,
                   message=inc.message, step=step, line=inc.source.get("line"), opened=update.opened)
        requested = set(inc.requested)
        action = next((a for a in JOB_ACTIONS if a in requested), None)
        event = "opened" if update.opened else "realert"
        acting = self._acting_on(inc) if update.opened else None
        if acting is not None:
            self._cover(inc, acting, action, _fault_step(inc, step))
            return
        if action is None:
            self._notify(inc, event)
            return
        if self.dry_run:
            self._note_dry_run(inc, action, _fault_step(inc, step))
            self._notify(inc, event)
            return
        if self.job is None:
            inc.note_action(action, "unavailable",
                            reason="no supervised job here and no actions.restart.command configured")
            self._notify(inc, event)
            return
        if any(p.incident.id == inc.id for p in self.pending) or inc.status == "acting":
            return
        inc.status = "acting"
        self.pending.append(Pending(inc, action, _fault_step(inc, step)))
        self.log.info("incident: job action queued", incident=inc.id, fault=inc.fault, action=action)

    def _acting_on(self, inc: Incident) -> Incident | None:
        """An incident of the same fault and group whose job action is under way: a NaN loss
        and the NaN gradient norms of the same steps are one fault, one recovery, one message."""
        for other in [p.incident for p in self.pending] + list(self.book.incidents.values()):
            if other.id != inc.id and other.status == "acting" and other.fault == inc.fault \
                    and other.group == inc.group:
                return other
        return None

    def _cover(self, inc: Incident, acting: Incident, action: str | None, step: int | None) -> None:
        """`inc` rides along with `acting`: no action or message of its own; it ends as `acting` ends."""
        for name in [a for a in inc.requested if a in (*JOB_ACTIONS, "notify")]:
            inc.note_action(name, "covered", by=acting.id,
                            reason=f"incident {acting.id} ({acting.rule}) is acting on the same fault")
        pending = next((p for p in self.pending if p.incident is acting), None)
        if pending is not None and action is not None:  # what it asked for still shapes the recovery
            pending.action = "restore" if "restore" in (pending.action, action) else pending.action
            pending.step = min((s for s in (pending.step, step) if s is not None), default=None)
        self.covered.setdefault(acting.id, []).append(inc)
        self.log.info("incident covered by one being acted on", incident=inc.id, by=acting.id)

    # --- job actions ---------------------------------------------------------------------
    def stop_job(self) -> None:
        """Stop the job for the pending incidents (stacks first when one is a hang)."""
        if not self.pending or self.job is None:
            return
        incidents = [p.incident for p in self.pending]
        details = self.job.stop(incidents)
        for inc in incidents:
            inc.note_action("stop", "done", **details)
        self.dirty = True
        self._tell("stopped", **details)

    def recover(self) -> Result:
        """Restore (when asked) and restart the job for every pending incident at once."""
        if not self.pending:
            return Result.NOTHING
        pending, self.pending = self.pending, []
        incidents = [p.incident for p in pending]
        first = incidents[0]
        self.dirty = True
        if any(p.action == "restore" for p in pending):
            steps = [p.step for p in pending if p.step is not None]
            before = min(steps) if steps else None
            restored = roll_back(self.store, before, reason=f"incident {first.id}: {first.fault} "
                                 f"before step {before}", batch_id=f"{first.id[:8]}-{int(time.time())}")
            outcome = "done" if restored.checkpoint else "no_healthy_checkpoint"
            for inc in incidents:
                inc.note_action("restore", outcome, before_step=before, **restored.details())
            self._tell("restored", before_step=before, **restored.details())
        else:
            restored = self._resume_point()
        result = self._restart(restored, incidents, reason=f"{first.fault} ({first.rule})")
        for inc in incidents:
            if result is Result.RELAUNCHED:
                inc.status = "resolved"
                self._notify(inc, "recovered")
            elif result is Result.GAVE_UP:
                # A job given up for good is told even when the rule did not ask for notify.
                inc.status = "failed"
                self._notify(inc, "failed", always=True)
            for rider in self.covered.pop(inc.id, []):
                if inc.status in ("resolved", "failed"):
                    rider.status = inc.status
        return result

    def relaunch_after_exit(self, status: int) -> Result:
        """The job exited with an error that no rule explained: restart it like torchrun would,
        from the newest healthy checkpoint, on the same budget."""
        self.log.warning("job exited with an error; restarting", exit_code=status)
        result = self._restart(self._resume_point(), [], reason=f"exit status {status}")
        if result is Result.GAVE_UP:
            self.notifier.send(Notice(
                event="gave_up", severity="critical", run_id=self.run_id,
                message=f"the job exited with status {status} and {self.budget.describe()} are used up: "
                        f"not restarted again"))
        return result

    def _resume_point(self) -> Restored:
        """For a plain restart: the newest healthy checkpoint, nothing quarantined."""
        chosen, passed = self.store.choose(None)
        return Restored(chosen, passed)

    def _restart(self, restored: Restored, incidents: list[Incident], reason: str) -> Result:
        delay = self.budget.next_delay()
        if delay is None:
            why = f"{self.budget.describe()} used up (circuit breaker open)"
            for inc in incidents:
                inc.note_action("restart", "gave_up", reason=why)
            self.log.error("not restarting the job", reason=why, after=reason)
            self._tell("gave_up", reason=why)
            return Result.GAVE_UP
        self._tell("backoff", delay_s=round(delay, 3))
        self.stop_event.wait(delay)  # tenacity's back-off, cut short by a shutdown
        if self.stop_event.is_set():
            for inc in incidents:
                inc.note_action("restart", "cancelled", reason="faultwarden is shutting down")
            return Result.CANCELLED
        ckpt = restored.checkpoint
        names = templates.values(incidents[0].group if incidents else None,
                                 incident=incidents[0].id if incidents else None, run_id=self.run_id,
                                 checkpoint=ckpt.path if ckpt else None, step=ckpt.step if ckpt else None)
        args = resume_args(self.restore_settings.resume, ckpt, names) if ckpt else []
        try:
            details = self.job.relaunch(args, resume_env(self.restore_settings, ckpt), names)
        except OSError as exc:
            for inc in incidents:
                inc.note_action("restart", "failed", reason=str(exc))
            self._tell("gave_up", reason=f"the job could not be started again: {exc}")
            return Result.GAVE_UP
        details = {"delay_s": round(delay, 3), "resume": args, **details}
        for inc in incidents:
            inc.note_action("restart", "done", **details)
        self.log.info("job restarted", after=reason, **details)
        self._tell("restarted", **details)
        return Result.RELAUNCHED

    # --- notifications -------------------------------------------------------------------
    def _notify(self, inc: Incident, event: str, always: bool = False) -> None:
        if "notify" not in inc.requested and not always:
            return
        if self.notifier.send(Notice.of(inc, event, self.run_id)) == 0:
            inc.note_action("notify", "skipped", reason="no channel configured at this severity")

    def poll(self) -> None:
        """Write finished notifications on their incidents."""
        for outcome in self.notifier.drain():
            inc = self.book.incidents.get(outcome.incident) if outcome.incident else None
            if inc is not None:
                inc.note_action("notify", "sent" if outcome.ok else "failed",
                                channel=outcome.channel, detail=outcome.detail)
                self.dirty = True
            self._tell("notified", channel=outcome.channel, ok=outcome.ok, detail=outcome.detail,
                       incident=outcome.incident)

    def close(self, timeout_s: float = 30.0) -> None:
        self.notifier.wait(timeout_s)
        self.poll()

    # --- helpers -------------------------------------------------------------------------
    def _note_dry_run(self, inc: Incident, action: str, step: int | None) -> None:
        if action == "restore":
            would = roll_back(self.store, step, reason="dry run", dry_run=True)
        else:
            would = self._resume_point()
        inc.note_action(action, "skipped", reason="dry run", would=would.details())
        self.log.info("dry run: would act", incident=inc.id, action=action, **would.details())

    def _tell(self, what: str, **details: Any) -> None:
        if self.observer is not None:
            self.observer(what, {"t": time.time(), **details})


def _fault_step(inc: Incident, step: int | None) -> int | None:
    """The first step of the fault: what the rule explained, else the step being read."""
    for key in ("first_step", "ml.step", "step"):
        value = inc.explanation.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value) if step is None else min(int(value), step)
    return step
