"""`faultwarden run -- CMD`: one job, supervised.

    job stdout/stderr ─▶ runs/<id>/job.log ───────┐
    job's own events ──▶ runs/<id>/events.jsonl ──┴▶ Parser ─▶ Pipeline (rules) ─▶ IncidentBook
          ▲                                             ▲ tick every second (hangs)        │
          └──── stop · restore · restart with back-off · notify ◀──── Dispatcher ◀────────┘

Everything runs on the main thread except the pipe readers and the event-file follower (which
only append to the log and a queue) and the notification sender. The job's own exit status is
`run`'s, unless it was restarted and the restart budget ran out (exit 1).
"""
from __future__ import annotations

import queue
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from faultwarden.daemon import logs
from faultwarden.daemon.actions.checkpoints import CheckpointStore
from faultwarden.daemon.actions.dispatcher import Dispatcher, Observer, Result
from faultwarden.daemon.actions.notify import Notifier
from faultwarden.daemon.actions.restart import RestartBudget
from faultwarden.daemon.actions.statelock import StateDirBusy, StateDirLock
from faultwarden.daemon.actions.supervisor import Line, Supervisor, exit_note
from faultwarden.daemon.config import Config, Source
from faultwarden.daemon.incidents import Incident, IncidentBook, Inhibition, Update
from faultwarden.daemon.pipeline import ModelError, Pipeline, detectors_for

TICK_S = 1.0
BATCH_LINES = 5000  # lines handled between two looks at the clock
EXIT_GAVE_UP = 1
EXIT_USAGE = 2


def run_supervised(config: Config, cmd: list[str], dry_run: bool, *, detectors: list | None = None,
                   parser: Any = None, observer: Observer | None = None,
                   stop: threading.Event | None = None) -> int:
    """Run `cmd` under supervision; returns the exit status for `faultwarden run`.

    `detectors` default to the configured rule engine; `parser(path)` makes the parser of one
    input file (the standard parser by default);
    `observer(what, details)` hears each step of the story (started, incident, stopped,
    restored, backoff, restarted, gave_up, exited, notified), e.g. for `faultwarden demo`.
    """
    if not cmd:
        return _usage("no command given after `--`")
    try:
        lock = StateDirLock(config.state_dir).acquire()
    except StateDirBusy as exc:
        return _usage(str(exc))
    try:
        if detectors is None:
            detectors = default_detectors(config)
        run = SupervisedRun(config, list(cmd), dry_run, detectors, parser, observer, stop)
        return run.run()
    except _Usage as exc:
        return _usage(str(exc))
    finally:
        lock.release()


def default_detectors(config: Config) -> list:
    """The configured rule folders over the default pack, and the anomaly model if named."""
    from faultwarden.detectors.rules import RuleSet
    from faultwarden.detectors.yamlfile import FileError

    try:
        ruleset = RuleSet.load(config.detectors.rules, include_default=config.detectors.default_rules)
        return detectors_for(ruleset, config.detectors.anomaly.model)
    except (FileError, ModelError) as exc:
        raise _Usage(str(exc)) from exc


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def job_source(config: Config, run_id: str, log_path: Path, cmd: Sequence[str]) -> Source:
    """The job's output as a source: format, service and labels from the first configured
    source, if any; the path is the run's job.log."""
    base = config.sources[0] if config.sources else Source(paths=[str(log_path)])
    return base.model_copy(update={"paths": [str(log_path)], "run_id": run_id,
                                   "service": base.service or service_name(cmd)})


def service_name(cmd: Sequence[str]) -> str:
    """`python train.py` → train; `torchrun ... pretrain.py` → pretrain; `./job` → job."""
    script = next((a for a in cmd if a.endswith(".py")), cmd[0])
    return Path(script).stem or "job"


def _default_parser(config: Config, run_id: str, path: Path, cmd: Sequence[str]):
    from faultwarden.daemon.parse import Parser

    try:
        return Parser(job_source(config, run_id, path, cmd))
    except ValueError as exc:  # a source's multiline_start that is not a regex
        raise _Usage(f"{config.path or 'config'}: sources[0]: {exc}") from exc


class _Usage(Exception):
    pass


def _usage(message: str) -> int:
    print(f"faultwarden: {message}", file=sys.stderr)
    return EXIT_USAGE


@dataclass
class SupervisedJob:
    """The Dispatcher's handle on the supervised child."""

    supervisor: Supervisor
    grace_s: float
    run_dir: Path

    def stop(self, incidents: list[Incident]) -> dict[str, Any]:
        details: dict[str, Any] = {"attempt": self.supervisor.attempt}
        if any(inc.fault == "hang" for inc in incidents) and self.supervisor.running:
            details.update(self.supervisor.capture_stacks(
                self.run_dir / f"stacks-attempt{self.supervisor.attempt}.txt"))
        details["exit_code"] = self.supervisor.stop(self.grace_s)
        return details

    def relaunch(self, resume: list[str], env: dict[str, str], names: dict[str, str]) -> dict[str, Any]:
        pid = self.supervisor.start(resume, env)
        return {"attempt": self.supervisor.attempt, "pid": pid, "argv": self.supervisor.argv}


class SupervisedRun:
    def __init__(self, config: Config, cmd: list[str], dry_run: bool, detectors: list,
                 parser: Any, observer: Observer | None, stop: threading.Event | None):
        self.config = config
        self.dry_run = dry_run
        self.observer = observer
        self.stop_event = stop or threading.Event()
        self.log = logs.get("faultwarden.run")
        state = Path(config.state_dir)
        given = next((s.run_id for s in config.sources if s.run_id), None)
        self.run_id = given or new_run_id()
        self.run_dir = state / "runs" / self.run_id
        self.log_path = self.run_dir / "job.log"  # what the job prints (stdout, stderr)
        self.events_path = self.run_dir / "events.jsonl"  # what it logs itself (faultwarden.model)
        self.lines: queue.Queue[Line] = queue.Queue()
        self.supervisor = Supervisor(cmd, self.log_path, self.lines.put, events_path=self.events_path,
                                     env={"FAULTWARDEN_RUN_ID": self.run_id,
                                          "FAULTWARDEN_LOG_PATH": str(self.events_path)})
        # One parser per file: each holds its own half-read multi-line record.
        self.parsers = {str(p): parser(p) if callable(parser) else _default_parser(config, self.run_id, p, cmd)
                        for p in (self.log_path, self.events_path)}
        self.book = IncidentBook(state / "incidents.json", inhibition=Inhibition.of(config.incidents))
        self.store = CheckpointStore.of(config.actions.restore.checkpoint_dirs)
        self.budget = RestartBudget(config.actions.restart)
        self.dispatcher = Dispatcher(
            self.book, restore=config.actions.restore, store=self.store, notifier=Notifier(config.notify),
            budget=self.budget, job=SupervisedJob(self.supervisor, config.actions.restart.grace_period_s,
                                                  self.run_dir),
            dry_run=dry_run, stop=self.stop_event, run_id=self.run_id, observer=observer)
        self.pipeline = Pipeline(detectors, self.book, on_incident=self._on_incident)
        self.sink = self.incident_index = None
        if config.elasticsearch.hosts:  # ship the job's events and incidents as the service does
            from faultwarden.daemon.ship import IncidentIndex
            from faultwarden.daemon.ship.sink import make_sink

            self.sink = make_sink(config)
            self.incident_index = IncidentIndex.from_config(config.elasticsearch)
        self.last_step: int | None = None
        self.signalled: int | None = None
        self.kill_at: float | None = None

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        previous = self._install_signals()
        try:
            try:
                self.supervisor.start()
            except OSError as exc:
                print(f"faultwarden: cannot start {self.supervisor.cmd[0]}: {exc.strerror or exc}",
                      file=sys.stderr)
                return 127 if isinstance(exc, FileNotFoundError) else 126
            self._tell("started", attempt=1, pid=self.supervisor.pid, argv=self.supervisor.argv,
                       run_id=self.run_id, log=str(self.log_path))
            self.log.info("job started", run_id=self.run_id, pid=self.supervisor.pid, log=str(self.log_path))
            return self._loop()
        finally:
            self._restore_signals(previous)
            if self.supervisor.running:
                self.supervisor.stop(self.config.actions.restart.grace_period_s)
            for pending in self.dispatcher.pending:  # faultwarden was stopped before it could act
                pending.incident.note_action(pending.action, "cancelled", reason="faultwarden stopped first")
                pending.incident.status = "open"
            self.dispatcher.close()
            self.book.save()
            self.supervisor.close()
            if self.sink is not None:
                self.sink.close(timeout=20)
                for incident in self.book.listing(include_closed=True):  # their final status
                    self.incident_index.upsert(incident)
                self.incident_index.close(timeout=10)

    def _loop(self) -> int:
        next_tick = time.monotonic() + TICK_S
        while True:
            self._pump(0.0 if self.dispatcher.pending else max(0.0, next_tick - time.monotonic()))
            if time.monotonic() >= next_tick:
                self.pipeline.tick(time.time())
                self.dispatcher.poll()
                self._save_if_dirty()
                next_tick = time.monotonic() + TICK_S
            if self.stop_event.is_set() and self.signalled is None:
                self._forward(signal.SIGTERM, None)  # asked to stop by the caller (service mode)
            self._escalate_forwarded_signal()
            if self.dispatcher.pending and self.signalled is None:
                result = self._recover()
                if result is Result.GAVE_UP:
                    return EXIT_GAVE_UP
                if result is not Result.CANCELLED:
                    continue
            status = self.supervisor.poll()
            if status is None:
                continue
            pid = self.supervisor.pid
            self.supervisor.reap()
            if status != 0 and self.signalled is None:
                # Said in job.log, where rules see it: a SIGKILL the job never printed anything
                # about (the OOM killer's) is matched like torchrun's report of one.
                self.supervisor.note(exit_note(pid, self.supervisor.attempt, status))
            self._drain()
            if self.dispatcher.pending and self.signalled is None:
                continue  # the job's last words asked for an action: recover on the next turn
            self._tell("exited", attempt=self.supervisor.attempt, exit_code=status)
            self.log.info("job exited", attempt=self.supervisor.attempt, exit_code=status)
            if status == 0 or self.signalled is not None or self.dry_run or not self.budget.enabled:
                return status
            result = self.dispatcher.relaunch_after_exit(status)
            self._save_if_dirty()
            if result is Result.GAVE_UP:
                return EXIT_GAVE_UP
            if result is Result.CANCELLED:
                return status

    def _recover(self) -> Result:
        """Stop the job, read what it still printed, then restore and restart it."""
        self.dispatcher.stop_job()
        self._drain()
        result = self.dispatcher.recover()
        self.book.save()
        self.dispatcher.dirty = False
        return result

    # --- lines and events ------------------------------------------------------------------
    def _pump(self, timeout: float) -> None:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return
        self._line(line)
        for _ in range(BATCH_LINES):
            try:
                self._line(self.lines.get_nowait())
            except queue.Empty:
                return

    def _drain(self) -> None:
        """Everything the stopped job printed, then the parser's last held record."""
        self.supervisor.output_done(timeout=30.0)
        while True:
            try:
                self._line(self.lines.get_nowait())
            except queue.Empty:
                break
        for parser in self.parsers.values():
            for event in parser.flush() or ():
                self._event(event)

    def _line(self, line: Line) -> None:
        events = self.parsers[line.path].feed(line.text, path=line.path, offset=line.offset,
                                              line_no=line.line_no, now=time.time())
        for event in events:
            self._event(event)

    def _event(self, event: dict) -> None:
        event.setdefault("labels.run_id", self.run_id)
        self.store.learn(event)
        step = event.get("ml.step")
        if isinstance(step, (int, float)) and not isinstance(step, bool):
            self.last_step = int(step)
        self.pipeline.feed(event)
        if self.sink is not None:
            self.sink.submit(event)  # named by its file and offset: a replay doubles nothing

    def _on_incident(self, update: Update) -> None:
        if update.opened:
            from faultwarden.daemon.discover import link_incident

            link_incident(update.incident, self.config.kibana)
        self.dispatcher.handle(update, step=self.last_step)
        if self.incident_index is not None:
            self.incident_index.upsert(update.incident)

    def _save_if_dirty(self) -> None:
        if self.dispatcher.dirty:
            self.book.save()
            self.dispatcher.dirty = False

    # --- signals -------------------------------------------------------------------------
    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._forward) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _restore_signals(self, previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _forward(self, signum: int, frame) -> None:
        """SIGINT/SIGTERM to faultwarden go to the job; it decides how to end. No restart after."""
        self.signalled = signum
        self.stop_event.set()
        self.supervisor.signal(signum)
        if self.kill_at is None:
            self.kill_at = time.monotonic() + self.config.actions.restart.grace_period_s

    def _escalate_forwarded_signal(self) -> None:
        if self.kill_at is not None and time.monotonic() > self.kill_at and self.supervisor.running:
            self.log.warning("job ignored the forwarded signal; killing it")
            self.supervisor.signal(signal.SIGKILL)
            self.kill_at = None

    def _tell(self, what: str, **details: Any) -> None:
        if self.observer is not None:
            self.observer(what, {"t": time.time(), **details})
