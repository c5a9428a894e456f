"""The systemd journal as a source: `journalctl -o json --follow` as a child process → events.

    reader = JournaldReader(source, state_dir)        # starts journalctl (never through a shell)
    for event, position in reader.read(timeout=0.5):  # the entries that came, as events
        if position.detect: pipeline.feed(event)      # False: a replay of what was already seen
        sink.submit(event, position.file_id, position.end)
    reader.shipped(file_id, end)                      # the sink's on_shipped: durably acknowledged
    reader.close()

Where reading starts. A cursor file `<state_dir>/journald-<key>.cursor` (JSON, replaced
atomically) keeps three journal cursors: `shipped`, the newest entry acknowledged (`acked`,
written at once and fsynced); `read`, the newest entry handed out (written at most once a second);
`origin`, the first entry ever handed out. On start journalctl resumes `--after-cursor=shipped`,
or, if nothing was acknowledged yet, at `--cursor=origin`: at least once. Entries up to `read`
come again with `detect=False` (shipping needs them, the detectors saw them: the design's two
cursors). With no cursor at all, the machine's own journal is read from now (`--lines=0`, what
Filebeat's `seek: tail` does: a first start must not replay months of history as live faults);
a journal named in the config (`directory`, `files`: say, what systemd-journal-remote collected)
is read from its start, as a log file is.

Which entries. `units` and `kernel` become journalctl matches, OR-ed with `+`: a unit's own
lines (`_SYSTEMD_UNIT=`), systemd's lines about it (`UNIT=` from PID 1: "Main process exited,
code=killed"), its core dumps (`COREDUMP_UNIT=`), and the kernel's (`_TRANSPORT=kernel`). Not
`-k`: it implies `-b`, this boot only, which would break resuming across a reboot. Unit names
without a type get `.service` as `journalctl -u` does; a glob (`train-*`) cannot be a match, so
with one the filtering is done here. The same filter is applied here in every case.

Each entry becomes one event (flat dotted ECS names, see `entry_event`). The message goes through
the file sources' `Parser` too, so a unit's JSON lines give their `ml.*` numbers, a text header
its level, an Xid its `labels.gpu_xid`; the journal's fields win for time, host and pid.
"""
from __future__ import annotations

import collections
import fnmatch
import hashlib
import itertools
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from faultwarden.daemon import logs
from faultwarden.daemon.config import Source

log = logs.get("faultwarden.journald")

FILE_ID_PREFIX = "journald-"
QUEUE_LINES = 10_000  # entries read ahead of the caller; journalctl waits (its pipe fills) beyond
MAX_LINE = 64 << 20  # one JSON entry; binary fields are number arrays, 4x their size
READ_SAVE_S = 1.0  # how stale the persisted `read` cursor may get (a crash only re-detects)
STOP_WAIT_S = 5.0

# The fields asked for (journalctl adds __CURSOR and the timestamps itself).
FIELDS = ("MESSAGE", "PRIORITY", "_HOSTNAME", "_PID", "_COMM", "SYSLOG_IDENTIFIER", "_TRANSPORT",
          "_MACHINE_ID", "_SYSTEMD_UNIT", "UNIT", "COREDUMP_UNIT")
# syslog priorities → log.level
LEVELS = ("critical", "critical", "critical", "error", "warning", "info", "info", "debug")
UNIT_TYPES = ("service", "socket", "target", "device", "mount", "automount", "swap", "timer",
              "path", "slice", "scope")
_CURSOR = re.compile(r"s=(?P<s>[0-9a-f]{32});i=(?P<i>[0-9a-f]+);b=[0-9a-f]{32};m=[0-9a-f]+;"
                     r"t=(?P<t>[0-9a-f]+);x=[0-9a-f]+")
_EOF = object()
# `end`s unique across the readers of a process: a reader made again (journalctl restarted)
# must not take a call-back for its predecessor's events as its own.
_ENDS = itertools.count(1)


class JournaldError(RuntimeError):
    """journalctl is missing, or it stopped."""


class Position(NamedTuple):
    """Where an event came from in the journal, for the sink and for `acked`."""
    file_id: str  # for the sink: names the document (with log.offset) and routes `on_shipped`
    end: int  # for the sink: grows with every entry handed out (not a journal position)
    cursor: str | None  # the entry's __CURSOR
    detect: bool  # False: handed out before a restart already (feed it to the sink only)


def source_key(source: Source) -> str:
    """A short stable name for a journald source: its cursor file and its documents' ids."""
    j = source.journald
    what = {"units": sorted(j.units), "kernel": j.kernel, "directory": j.directory, "files": sorted(j.files)}
    return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


def unit_name(name: str) -> str:
    """`trainer` → `trainer.service`, as `journalctl -u` reads it."""
    return name if name.rpartition(".")[2] in UNIT_TYPES else f"{name}.service"


def _is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def command(source: Source, after: str | None = None, at: str | None = None) -> list[str]:
    """The journalctl argv for a source, resuming after cursor `after` or at cursor `at`."""
    j = source.journald
    argv = [j.journalctl, "--output=json", "--follow", "--no-pager", "--all",
            f"--output-fields={','.join(FIELDS)}"]
    if j.directory:
        argv.append(f"--directory={j.directory}")
    argv += [f"--file={f}" for f in j.files]
    if after:
        argv.append(f"--after-cursor={after}")
    elif at:
        argv.append(f"--cursor={at}")
    else:
        named = bool(j.directory or j.files)
        argv.append("--lines=all" if named else "--lines=0")
    units = [unit_name(u) for u in j.units]
    if units and not any(_is_glob(u) for u in units):
        # Same field: OR-ed; different fields in one group: AND-ed; `+` ORs the groups.
        argv += [f"_SYSTEMD_UNIT={u}" for u in units]
        argv += ["+", *[f"UNIT={u}" for u in units], "_PID=1"]
        argv += ["+", *[f"COREDUMP_UNIT={u}" for u in units]]
        if j.kernel:
            argv += ["+", "_TRANSPORT=kernel"]
    return argv


class _Filter:
    """Which entries a source wants (journalctl's matches already did most of it)."""

    def __init__(self, source: Source):
        self.kernel = source.journald.kernel
        self.units = [unit_name(u) for u in source.journald.units]

    def __call__(self, fields: dict) -> bool:
        if fields.get("_TRANSPORT") == "kernel":
            return self.kernel
        if not self.units:
            return True
        return any(fnmatch.fnmatchcase(u, pattern) for u in _units_of(fields) for pattern in self.units)


def _units_of(fields: dict) -> list[str]:
    units = []
    if fields.get("UNIT") and _text(fields.get("_PID")) == "1":
        units.append(_text(fields["UNIT"]))  # systemd's own lines about the unit
    for key in ("COREDUMP_UNIT", "_SYSTEMD_UNIT"):
        if fields.get(key):
            units.append(_text(fields[key]))
    return units


def _text(value: Any) -> str:
    """A journal JSON value as text: a string; a list of byte values (a field that is not
    printable UTF-8); a list of either (a field given more than once: the first counts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if value and all(isinstance(b, int) for b in value):
            return bytes(b & 0xFF for b in value).decode("utf-8", "replace")
        return _text(value[0]) if value else ""
    return "" if value is None else str(value)


def _cursor_parts(cursor: str | None) -> tuple[str, int, int] | None:
    """(sequence id, sequence number, realtime µs) of a cursor."""
    m = _CURSOR.fullmatch(cursor or "")
    return (m.group("s"), int(m.group("i"), 16), int(m.group("t"), 16)) if m else None


class _Replay:
    """Tells the entries up to the `read` cursor of the last run (detect=False) from new ones."""

    def __init__(self, read_cursor: str | None):
        self.until = _cursor_parts(read_cursor)

    def seen(self, cursor: str | None) -> bool:
        if self.until is None:
            return False
        here = _cursor_parts(cursor)
        if here is None:
            return True  # cannot tell: shipping it again is harmless, detecting it twice is not
        seq, number, realtime = self.until
        if here[0] == seq:  # the same sequence: its numbers say it exactly
            done, seen = here[1] >= number, here[1] <= number
        else:  # another journal interleaved (or the last entry was vacuumed): by time
            done = seen = False
            if here[2] > realtime:
                done = True
            else:
                seen = True
        if done:
            self.until = None
        return seen


class _CursorFile:
    """`{"shipped": ..., "read": ..., "origin": ...}`, replaced atomically."""

    def __init__(self, path: Path):
        self.path = path
        self.state: dict[str, str | None] = {"shipped": None, "read": None, "origin": None}
        self._written = dict(self.state)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("journald cursor file unreadable; starting without it", file=str(path), error=str(exc))
            return
        for key in self.state:
            value = data.get(key) if isinstance(data, dict) else None
            if value is not None and _cursor_parts(value) is None:
                log.warning("journald cursor file holds a bad cursor; ignoring it", file=str(path),
                            field=key, cursor=str(value)[:200])
                value = None
            self.state[key] = value
        self._written = dict(self.state)

    def save(self, fsync: bool) -> None:
        if self.state == self._written:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(self.state, f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if fsync:
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._written = dict(self.state)


class JournaldReader:
    """One journald source: a journalctl child process, a thread reading its lines."""

    def __init__(self, source: Source, state_dir: str | Path, *, max_batch: int = 1000):
        if source.journald is None:
            raise ValueError("not a journald source (it has no `journald` section)")
        self.source = source
        self.binary = source.journald.journalctl
        self.key = source_key(source)
        self.file_id_prefix = f"{FILE_ID_PREFIX}{self.key}:"
        self.max_batch = max_batch
        j = source.journald
        self.path = "journald:" + (j.directory or ",".join(j.files)) if (j.directory or j.files) else None
        self._wanted = _Filter(source)
        from faultwarden.daemon.parse import Parser

        self._parser = Parser(source)
        state = Path(state_dir)
        state.mkdir(parents=True, exist_ok=True)
        self._cursors = _CursorFile(state / f"journald-{self.key}.cursor")
        self._replay = _Replay(self._cursors.state["read"])
        self._lock = threading.Lock()  # the cursor file and `_pending`: acks come from the sink's thread
        self._pending: collections.deque[tuple[int, str | None]] = collections.deque()
        self._last_read: str | None = None  # the newest cursor of the batch the caller holds
        self._read_saved_at = 0.0
        self._lines: queue.Queue = queue.Queue(QUEUE_LINES)
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._closing = threading.Event()
        self._failure: str | None = None
        self._machine_id: str | None = None
        self.argv = command(source, after=self._cursors.state["shipped"], at=self._cursors.state["origin"])
        self._proc = self._start()
        self._threads = [threading.Thread(target=self._pump, name=f"faultwarden-journald-{self.key}", daemon=True),
                         threading.Thread(target=self._drain_stderr, name=f"faultwarden-journald-err-{self.key}",
                                          daemon=True)]
        for thread in self._threads:
            thread.start()
        log.info("journald.started", argv=self.argv)

    def _start(self) -> subprocess.Popen:
        if shutil.which(self.binary) is None:
            raise JournaldError(f"journalctl not found: {self.binary!r} is not an executable on PATH "
                                f"(install systemd, or set the source's journald.journalctl)")
        try:
            return subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, close_fds=True,
                                    env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""})
        except OSError as exc:
            raise JournaldError(f"could not start {self.binary}: {exc}") from None

    # --- the reading threads -------------------------------------------------------------
    def _pump(self) -> None:
        """journalctl's stdout, line by line, into the bounded queue (a full queue stops the
        reading, and journalctl blocks on its pipe: memory stays bounded, nothing is lost)."""
        stream = self._proc.stdout
        try:
            while not self._closing.is_set():
                line = stream.readline(MAX_LINE)
                if not line:
                    break
                if not line.endswith(b"\n") and len(line) >= MAX_LINE:
                    size = len(line)
                    while line and not line.endswith(b"\n"):  # the rest of it
                        line = stream.readline(MAX_LINE)
                        size += len(line)
                    line = _TooLarge(size)
                self._put(line)
        except (OSError, ValueError):
            pass  # the pipe was closed by close()
        self._put(_EOF)

    def _put(self, item) -> None:
        while not self._closing.is_set():
            try:
                self._lines.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _drain_stderr(self) -> None:
        try:
            for raw in self._proc.stderr:
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    self._stderr.append(text)
                    log.warning("journald.journalctl_says", binary=self.binary, line=text)
        except (OSError, ValueError):
            pass

    # --- the caller's side ---------------------------------------------------------------
    def read(self, timeout: float = 0.0) -> list[tuple[dict, Position]]:
        """The entries that came within `timeout` seconds (up to `max_batch`), as events.

        Raises JournaldError once journalctl has stopped (after the events it wrote before).
        Calling it again means the caller is done with the events of the last call (their
        `read` cursor may be persisted)."""
        self._commit_read()
        if self._failure is not None:
            raise JournaldError(self._failure)
        out: list[tuple[dict, Position]] = []
        try:
            item = self._lines.get(timeout=timeout) if timeout > 0 else self._lines.get_nowait()
            while True:
                if item is _EOF:
                    self._failure = self._why_stopped()
                    break
                entry = self._entry(item)
                if entry is not None:
                    out.append(entry)
                if len(out) >= self.max_batch:
                    break
                item = self._lines.get_nowait()
        except queue.Empty:
            pass
        if self._failure is not None and not out:
            raise JournaldError(self._failure)
        return out

    def acked(self, token: Position | int) -> None:
        """Every event up to `token` (a Position, or its `end`) is safely kept: durably store
        the newest cursor among them, so a restart resumes after it."""
        end = token.end if isinstance(token, Position) else token
        with self._lock:
            cursor = None
            while self._pending and self._pending[0][0] <= end:
                cursor = self._pending.popleft()[1] or cursor
            if cursor is None:
                return
            self._cursors.state["shipped"] = cursor
            self._cursors.save(fsync=True)

    def owns(self, file_id: str) -> bool:
        return file_id.startswith(self.file_id_prefix)

    def shipped(self, file_id: str, end: int) -> None:
        """The sink's `on_shipped(file_id, end)` for this reader's events."""
        if self.owns(file_id):
            self.acked(end)

    def close(self) -> None:
        """Stop journalctl; keep the cursors."""
        self._closing.set()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for thread in self._threads:
            thread.join(STOP_WAIT_S)
        for stream in (self._proc.stdout, self._proc.stderr):
            stream.close()
        self._commit_read(force=True)

    def __enter__(self) -> JournaldReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- inside ----------------------------------------------------------------------------
    def _commit_read(self, force: bool = False) -> None:
        if self._last_read is None:
            return
        with self._lock:
            self._cursors.state["read"] = self._last_read
            now = time.monotonic()
            if force or now - self._read_saved_at >= READ_SAVE_S:
                self._cursors.save(fsync=False)
                self._read_saved_at = now

    def _why_stopped(self) -> str:
        try:
            code = self._proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            code = None
        for thread in self._threads[1:]:
            thread.join(1.0)  # its last words
        said = " | ".join(self._stderr) or "no message"
        return f"{self.binary} stopped (exit status {code}): {said} [argv: {' '.join(self.argv)}]"

    def _entry(self, line) -> tuple[dict, Position] | None:
        if isinstance(line, _TooLarge):
            event = self._event_of({"MESSAGE": f"journal entry of {line.size} bytes of JSON not read: "
                                               f"longer than {MAX_LINE} bytes"}, tags=["parse_error"])
            return self._hand_out(event, None)
        try:
            fields = orjson.loads(line)
            if not isinstance(fields, dict):
                raise ValueError(f"expected a JSON object, got {type(fields).__name__}")
        except ValueError as exc:  # journalctl wrote something else: kept, never dropped
            text = line.decode("utf-8", "replace").rstrip("\n")
            event = self._event_of({"MESSAGE": text[:10_000]}, tags=["parse_error"])
            event["error.message"] = f"journalctl wrote a line that is not a journal entry: {exc}"
            return self._hand_out(event, None)
        if not self._wanted(fields):
            return None
        cursor = fields.get("__CURSOR")
        return self._hand_out(self._event_of(fields), cursor if isinstance(cursor, str) else None)

    def _hand_out(self, event: dict, cursor: str | None) -> tuple[dict, Position]:
        end = next(_ENDS)
        parts = _cursor_parts(cursor)
        if parts is not None:
            event["log.offset"] = parts[1]
            event["labels.journal_cursor"] = cursor
        detect = not self._replay.seen(cursor)
        with self._lock:
            self._pending.append((end, cursor))
            if cursor is not None and self._cursors.state["origin"] is None:
                self._cursors.state["origin"] = cursor
                self._cursors.save(fsync=True)
        if cursor is not None:
            self._last_read = cursor
        # The sequence id names the documents with the number: after a wiped or volatile
        # journal the numbers start again, under a new id.
        file_id = self.file_id_prefix + (parts[0] if parts else "unknown")
        return event, Position(file_id, end, cursor, detect)

    def _event_of(self, fields: dict, tags: list[str] | None = None) -> dict:
        return entry_event(fields, self._parser, path=self.path or self._system_path(fields), tags=tags)

    def _system_path(self, fields: dict) -> str:
        machine = _text(fields.get("_MACHINE_ID")) or self._machine_id
        if not machine:
            try:
                machine = self._machine_id = Path("/etc/machine-id").read_text().strip()
            except OSError:
                machine = "local"
        return f"journald:{machine}"


class _TooLarge:
    def __init__(self, size: int):
        self.size = size


def entry_event(fields: dict, parser, *, path: str, tags: list[str] | None = None,
                now: float | None = None) -> dict:
    """One journal entry (journalctl's JSON) → one event.

    `message` ← MESSAGE, run through `parser` (a unit's JSON line gives its `ml.*` fields, a text
    header its level, logger and time); then the journal's own fields, which win:
    `@timestamp` ← __REALTIME_TIMESTAMP, `host.name` ← _HOSTNAME, `process.pid` ← _PID,
    `process.name` ← _COMM. `log.level` ← PRIORITY, except on a unit's stdout/stderr
    (_TRANSPORT=stdout), where PRIORITY is only the stream's default and the level the line
    states wins. `log.logger` ← the line's, else SYSLOG_IDENTIFIER (`kernel` for kernel lines).
    `service.name` ← the source's, else the line's, else the unit. `log.offset` and the cursor
    are set by the reader."""
    now = time.time() if now is None else now
    message = _text(fields.get("MESSAGE"))
    realtime = fields.get("__REALTIME_TIMESTAMP")
    try:
        stamp = int(realtime) / 1e6 if realtime is not None else now
    except (TypeError, ValueError):
        stamp = now
    event: dict[str, Any] = {}
    lines = message.split("\n")
    for line in lines:  # a multi-line message (a logged traceback) is one record
        for e in parser.feed(line, path=path, offset=0, line_no=0, now=stamp):
            _merge(event, e)
    for e in parser.flush():
        _merge(event, e)
    if len(lines) > 1 or "message" not in event:
        event["message"] = message
    if "\ufffd" in message and "invalid_utf8" not in event.get("tags", ()):
        event["tags"] = [*event.get("tags", ()), "invalid_utf8"]
    if tags:
        event["tags"] = [*event.get("tags", ()), *tags]
    event.pop("log.file.line", None)
    event["@timestamp"] = stamp
    event["event.ingested"] = now
    event["log.file.path"] = path
    transport = _text(fields.get("_TRANSPORT"))
    priority = _text(fields.get("PRIORITY"))
    if priority.isdigit() and int(priority) < len(LEVELS) and not (transport == "stdout" and "log.level" in event):
        event["log.level"] = LEVELS[int(priority)]
    if fields.get("_HOSTNAME"):
        event["host.name"] = _text(fields["_HOSTNAME"])
    pid = _text(fields.get("_PID"))
    if pid.isdigit():
        event["process.pid"] = int(pid)
    if fields.get("_COMM"):
        event["process.name"] = _text(fields["_COMM"])
    if "log.logger" not in event:
        logger = "kernel" if transport == "kernel" else _text(fields.get("SYSLOG_IDENTIFIER"))
        if logger:
            event["log.logger"] = logger
    if "service.name" not in event:
        units = _units_of(fields)
        if units:
            event["service.name"] = units[0]
    return event


def _merge(into: dict, event: dict) -> None:
    """Several events of one message (a header line, then a traceback): the first one's fields
    first, later ones add theirs."""
    for key, value in event.items():
        if key == "tags":
            into["tags"] = [*into.get("tags", ()), *(t for t in value if t not in into.get("tags", ()))]
        else:
            into.setdefault(key, value)


def open_journals(sources: list[Source], state_dir: str | Path) -> list[JournaldReader]:
    """A reader for every journald source of the config (closing those opened if one fails)."""
    readers: list[JournaldReader] = []
    try:
        for source in sources:
            if source.journald is not None:
                readers.append(JournaldReader(source, state_dir))
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    return readers
