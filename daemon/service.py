"""Service mode: the daemon over the configured sources (what systemd runs).

    sources ──tail──▶ lines ──parse──▶ events ──┬──▶ detectors ──▶ incidents ──▶ actions
                                                └──▶ sink (Elasticsearch), shipping cursor ◀── ack

The detection path never waits for the sink: lines the tailer hands out with `detect` go to the
pipeline at once; lines with `ship` go to the sink, whose acknowledgement commits the file's
shipping cursor. A dead Elasticsearch holds back only that cursor (the file is the buffer).
With `-- CMD`, `supervised.run_supervised` runs the same pipeline around one job instead.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from faultwarden.daemon import logs
from faultwarden.daemon.config import Config
from faultwarden.daemon.incidents import IncidentBook, Inhibition, Update
from faultwarden.daemon.pipeline import ModelError, Pipeline, detectors_for

TICK_S = 1.0
SAVE_EVERY_S = 30.0


def serve(config: Config, cmd: list[str], dry_run: bool = False) -> int:
    if cmd:
        from faultwarden.daemon.supervised import run_supervised

        return run_supervised(config, cmd, dry_run)
    return Service(config, dry_run).run()


@dataclass
class _FileRead:
    """One file's parser and what the next records need of its past."""

    parser: object
    end: int = 0  # end of the last line fed
    seen: float = 0.0  # when it was fed (monotonic)
    ship: bool = False  # its ship flag
    clock: float | None = None  # the file's own clock: its newest record time

    def now(self) -> float:
        """The time given to a record without a timestamp of its own: the file's own clock moved
        on by the wall-clock time since its last line, as `diagnose` would date it for a backlog
        read at once, and about the wall clock for a live job."""
        if self.clock is None:
            return time.time()
        return self.clock + (time.monotonic() - self.seen)


class FileParsers:
    """One parser per file and purpose: multiline records must not mix across files, and the
    shipping re-read of a file must not mix with its live detection read."""

    IDLE_FLUSH_S = 2.0  # a crash traceback at the end of a quiet file is released after this

    def __init__(self, host: str | None = None):
        from faultwarden.daemon.parse import Parser

        self._make = lambda source: Parser(source, host=host)
        self._reads: dict[tuple[str, bool], _FileRead] = {}  # by (file_id, detect)

    def feed(self, line, detect: bool) -> list[tuple[dict, int]]:
        """Completed events with the offset up to which they are whole (a shipping cursor)."""
        read = self._reads.get((line.file_id, detect))
        if read is None:
            read = self._reads[(line.file_id, detect)] = _FileRead(self._make(line.source))
        events = read.parser.feed(line.text, path=line.path, offset=line.offset, line_no=line.line_no,
                                  now=read.now())
        read.end, read.seen, read.ship = line.end, time.monotonic(), line.ship
        wall = time.time()
        for event in events:
            read.clock = event["@timestamp"]
            event["event.ingested"] = wall
        # An event that began on this line ends with it; one released by it (a record this line
        # closed) ended before it began.
        return [(e, line.end if e.get("log.offset") == line.offset else line.offset) for e in events]

    def flush(self, idle_s: float = 0.0) -> list[tuple[str, bool, bool, dict, int]]:
        """Records held by parsers quiet for `idle_s`: (file_id, detect, ship, event, end offset)."""
        out, now = [], time.monotonic()
        for (file_id, detect), read in self._reads.items():
            if now - read.seen >= idle_s:
                out += [(file_id, detect, read.ship, e, read.end) for e in read.parser.flush()]
        return out


class Service:
    def __init__(self, config: Config, dry_run: bool = False):
        self.config = config
        self.dry_run = dry_run
        self.state_dir = Path(config.state_dir)
        self.log = logs.get("faultwarden.service")
        self.stop_requested = False
        self.reload_requested = False
        self.newest_event = 0.0  # the newest event time read, and when it was read
        self.newest_read_at = 0.0
        self.book_changed = False
        self.refused: set[str] = set()  # files the sink had no room for in this batch
        self.shipped_seen = 0  # sink acknowledgements already counted in the metrics
        self.actions_seen: dict[str, int] = {}  # incident id -> its actions already counted

    # --- assembly --------------------------------------------------------------------------
    def _assemble(self) -> None:
        from faultwarden.daemon.tail import Tailer
        from faultwarden.detectors.rules import RuleSet, RuleWatcher

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.book = IncidentBook(self.state_dir / "incidents.json",
                                 inhibition=Inhibition.of(self.config.incidents))
        detect = self.config.detectors
        self.detectors = detectors_for(RuleSet.load(detect.rules, include_default=detect.default_rules),
                                       detect.anomaly.model)
        self._restore_detector_state()
        self.rule_watcher = RuleWatcher(self.config.detectors.rules, include_default=self.config.detectors.default_rules)
        self.dispatcher = self._make_dispatcher()
        from faultwarden.daemon.journald import open_journals

        self.journals = open_journals(self.config.sources, self.state_dir)
        self.sink = self._make_sink()
        self.pipeline = Pipeline(self.detectors, self.book, on_incident=self._on_incident)
        self.tailer = Tailer(self.config.sources, self.state_dir / "tail",
                             max_unshipped_bytes=64 << 20 if self.sink else 0)
        self.parsers = FileParsers()
        from faultwarden.daemon.metrics import Metrics

        self.metrics = Metrics.create()
        if self.config.metrics.port is not None:
            self.metrics.serve(self.config.metrics.port)

    def _make_dispatcher(self):
        from faultwarden.daemon.actions.checkpoints import CheckpointStore
        from faultwarden.daemon.actions.command import CommandJob
        from faultwarden.daemon.actions.dispatcher import Dispatcher
        from faultwarden.daemon.actions.notify import Notifier
        from faultwarden.daemon.actions.restart import RestartBudget

        actions = self.config.actions
        # A job faultwarden did not start can only be restarted through the configured command.
        job = CommandJob(actions.restart.command) if actions.restart.command else None
        return Dispatcher(self.book, restore=actions.restore, store=CheckpointStore.of(actions.restore.checkpoint_dirs),
                          notifier=Notifier(self.config.notify), budget=RestartBudget(actions.restart),
                          job=job, dry_run=self.dry_run)

    def _make_sink(self):
        if not self.config.elasticsearch.hosts:
            return None
        from faultwarden.daemon.ship import IncidentIndex
        from faultwarden.daemon.ship.sink import make_sink

        sink = make_sink(self.config, on_shipped=self._shipped)
        self.incident_index = IncidentIndex.from_config(self.config.elasticsearch)
        return sink

    def _shipped(self, file_id: str, end: int) -> None:
        """The sink's acknowledgement (on its thread): a file's shipping cursor, or a journal's."""
        from faultwarden.daemon.journald import FILE_ID_PREFIX

        if file_id.startswith(FILE_ID_PREFIX):
            for reader in self.journals:
                reader.shipped(file_id, end)
        else:
            self.tailer.shipped(file_id, end)

    # --- the loop --------------------------------------------------------------------------
    def run(self) -> int:
        from faultwarden.daemon.actions.statelock import StateDirBusy, StateDirLock

        try:
            lock = StateDirLock(self.config.state_dir).acquire()
        except StateDirBusy as exc:
            print(f"faultwarden: {exc}", file=sys.stderr)
            return 2
        from faultwarden.detectors.yamlfile import FileError

        try:
            return self._run()
        except (FileError, ModelError) as exc:  # a broken rule file or model at start: exit 2
            print(f"faultwarden: {exc}", file=sys.stderr)
            return 2
        finally:
            lock.release()

    def _run(self) -> int:
        from faultwarden.daemon.systemd import Notifier

        self._assemble()
        notifier = Notifier()
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "reload_requested", True))
        notifier.ready(self._status())
        self.log.info("started", sources=len(self.config.sources), sink="elasticsearch" if self.sink else "none")
        last_tick = last_save = time.monotonic()
        events_at_tick = 0
        try:
            while not self.stop_requested:
                batch = self.tailer.read(timeout=0.5)
                self.refused.clear()
                for line in batch:
                    self._handle(line)
                journal_events = self._read_journals()
                if self.dispatcher.pending:
                    self.dispatcher.stop_job()
                    self.dispatcher.recover()
                now = time.monotonic()
                if now - last_tick >= TICK_S:
                    self._release_held(FileParsers.IDLE_FLUSH_S)
                    if not batch and not journal_events and self.newest_event:
                        self.pipeline.tick(self._event_clock())
                    self._maybe_reload()
                    self.dispatcher.poll()
                    self.book.sync()  # acks and silences given meanwhile by `faultwarden incidents`
                    if self.book_changed:  # an opened incident survives a crash right away
                        self.book.save()
                        self.book_changed = False
                    self._update_metrics()
                    rate = (self.pipeline.counters.events - events_at_tick) / (now - last_tick)
                    events_at_tick, last_tick = self.pipeline.counters.events, now
                    notifier.status(self._status(rate))
                if now - last_save >= SAVE_EVERY_S:
                    self._save()
                    last_save = now
                notifier.maybe_ping()
        finally:
            notifier.stopping()
            self._shutdown()
            notifier.close()
        return 0

    def _handle(self, line) -> None:
        self.metrics.lines_read.inc()
        if line.detect:
            for event, end in self.parsers.feed(line, detect=True):
                self._detect(event)
                if line.ship:
                    self._ship(event, line.file_id, end)
        elif line.ship:
            for event, end in self.parsers.feed(line, detect=False):
                self._ship(event, line.file_id, end)

    def _detect(self, event: dict) -> None:
        self.metrics.events_parsed.inc()
        if "parse_error" in event.get("tags", ()):
            self.metrics.parse_errors.inc()
        if (event.get("@timestamp") or 0.0) >= self.newest_event:
            self.newest_event, self.newest_read_at = event["@timestamp"], time.monotonic()
        self.pipeline.feed(event)

    def _ship(self, event: dict, file_id: str, end: int) -> None:
        """Hand an event to the sink without ever waiting: a full sink must not stop detection.
        What it cannot take is read again from the file later (the tailer's `resend`)."""
        if self.sink is None or file_id in self.refused:
            return
        if not self.sink.submit(event, file_id, end, timeout=0):
            self.refused.add(file_id)  # later lines of this batch would be acked past the gap
            self.tailer.resend(file_id, event["log.offset"])

    def _read_journals(self) -> int:
        """What the journald sources wrote meanwhile (no waiting: the tailer's read waited)."""
        from faultwarden.daemon.journald import JournaldError

        count = 0
        for reader in list(self.journals):
            try:
                entries = reader.read(timeout=0)
            except JournaldError as exc:  # journalctl stopped: that source ends, the rest go on
                self.log.error("journald source stopped", error=str(exc))
                reader.close()
                # Rebound, not changed in place: the sink's thread may be walking the list.
                self.journals = [r for r in self.journals if r is not reader]
                continue
            for event, position in entries:
                self.metrics.lines_read.inc()
                if position.detect:  # False: read before a restart, only shipping needs it again
                    self._detect(event)
                if self.sink:
                    self.sink.submit(event, position.file_id, position.end)
            if entries and not self.sink:  # nothing to wait for: done once detected
                reader.acked(entries[-1][1])
            count += len(entries)
        return count

    def _event_clock(self) -> float:
        """Event time, moved on by the wall-clock time passed since the newest event was read.

        Silence is measured from when lines stopped arriving, so a log of last month read at
        start-up is not a month-long hang, while a live job that goes quiet is seen as one.
        """
        return self.newest_event + (time.monotonic() - self.newest_read_at)

    def _release_held(self, idle_s: float) -> None:
        for file_id, detect, ship, event, end in self.parsers.flush(idle_s):
            if detect:
                self._detect(event)
            if ship:
                self._ship(event, file_id, end)

    def _on_incident(self, update: Update) -> None:
        self.metrics.findings.labels(fault=update.incident.fault).inc()
        if update.opened:
            self.metrics.incidents.labels(fault=update.incident.fault).inc()
        self.book_changed = True
        if update.opened:
            from faultwarden.daemon.discover import link_incident

            link_incident(update.incident, self.config.kibana)
        if update.opened or update.alert:
            self.log.warning("incident", id=update.incident.id, fault=update.incident.fault,
                             rule=update.incident.rule, message=update.incident.message)
            self.dispatcher.handle(update)
        if self.sink:
            self.incident_index.upsert(update.incident)

    def _update_metrics(self) -> None:
        """What other parts count themselves (the sink, the tailer, the actions on incidents)."""
        if self.sink is not None:
            shipped = self.sink.stats.shipped + self.sink.stats.already_there
            self.metrics.events_shipped.inc(shipped - self.shipped_seen)
            self.shipped_seen = shipped
            self.metrics.shipping_lag_bytes.set(
                sum(f["detect_offset"] - f["ship_offset"] for f in self.tailer.files()))
        for inc in self.book.incidents.values():
            for action in inc.actions[self.actions_seen.get(inc.id, 0):]:
                self.metrics.actions.labels(action=action["action"], outcome=action["outcome"]).inc()
            self.actions_seen[inc.id] = len(inc.actions)

    def _maybe_reload(self) -> None:
        from faultwarden.detectors.yamlfile import FileError

        if not self.reload_requested:
            result = self.rule_watcher.poll()
        else:
            self.reload_requested = False
            result = self.rule_watcher.poll(force=True)
            self._reload_model()
        if isinstance(result, FileError):
            self.metrics.rule_reloads.labels(result="error").inc()
            self.log.error("rule files not reloaded; the last good rules keep running", error=str(result))
        elif result is not None:
            from faultwarden.detectors.rules import RuleEngine

            state = self.detectors[0].state()
            self.detectors[0] = engine = RuleEngine(result)
            engine.restore(state)
            self.pipeline.detectors = self.detectors
            self.metrics.rule_reloads.labels(result="ok").inc()
            self.log.info("rules reloaded", rules=len(result.rules))

    def _reload_model(self) -> None:
        """SIGHUP also reads the anomaly model file again (a refit is deployed by replacing the
        file). One that cannot be loaded leaves the last good model running."""
        path = self.config.detectors.anomaly.model
        if not path:
            return
        from faultwarden.daemon.pipeline import ModelError, anomaly_detector

        try:
            fresh = anomaly_detector(path)
        except ModelError as exc:
            self.metrics.model_reloads.labels(result="error").inc()
            self.log.error("anomaly model not reloaded; the last good model keeps running", error=str(exc))
            return
        self.detectors[1] = fresh
        self.pipeline.detectors = self.detectors
        self.metrics.model_reloads.labels(result="ok").inc()
        self.log.info("anomaly model reloaded", file=path)

    def _status(self, rate: float = 0.0) -> str:
        return f"{rate:.0f} events/s, {len(self.book.listing())} open incidents"

    # --- state -----------------------------------------------------------------------------
    def _state_path(self) -> Path:
        return self.state_dir / "detectors.json"

    def _restore_detector_state(self) -> None:
        if self._state_path().exists():
            states = json.loads(self._state_path().read_text())
            for detector, state in zip(self.detectors, states):
                detector.restore(state)

    def _save(self) -> None:
        self.book.save()
        tmp = self._state_path().with_suffix(".tmp")
        tmp.write_text(json.dumps([d.state() for d in self.detectors]))
        os.replace(tmp, self._state_path())

    def _request_stop(self, *_) -> None:
        self.stop_requested = True

    def _shutdown(self) -> None:
        self._release_held(0.0)
        self.dispatcher.close()
        if self.sink:
            self.sink.close(timeout=20)
            for incident in self.book.listing(include_closed=True):  # their final status
                self.incident_index.upsert(incident)
            self.incident_index.close(timeout=10)
        self.tailer.close()
        for reader in self.journals:  # after the sink: its last acknowledgements are stored
            reader.close()
        self._save()
        self.log.info("stopped", events=self.pipeline.counters.events)
