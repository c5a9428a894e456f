"""Run the job as a child and watch what it prints and logs.

The job gets its own process group (session), so a stop reaches its DataLoader workers and
other children too, and it never goes through a shell. Two inputs reach the callback:
- its stdout and stderr, one pipe for both (as a terminal, or Slurm's `--output`, shows them):
  with two pipes the order between them is lost, and a traceback on stderr gets stdout lines
  spliced into it. Read line by line on one thread and appended to one log file (`job.log`,
  kept across restarts, so a line's byte offset names it for good), in the order written;
- the structured events it writes itself to `$FAULTWARDEN_LOG_PATH` (faultwarden.model's
  logger does by default), followed by polling, since only the job appends to that file.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

MAX_LINE_BYTES = 1 << 20  # a longer record is cut into pieces rather than held in memory
LINGER_S = 5.0  # after the job exits, how long its leftover children may hold the pipes open
PY_SPY_TIMEOUT_S = 20.0


POLL_S = 0.05  # how often the job's own event file is looked at


@dataclass(frozen=True)
class Line:
    text: str
    stream: str  # "output" (stdout+stderr) | "events" (the job's own event file) | "faultwarden" (a note)
    path: str  # the file the line is in
    offset: int  # byte offset of the line in that file
    line_no: int  # 1-based line number in that file
    attempt: int  # which start of the job wrote it (1 = the first)


def exit_code(returncode: int) -> int:
    """A shell-style exit status: killed by signal N is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def exit_note(pid: int | None, attempt: int, status: int) -> str:
    """faultwarden's JSON line on a job that ended by itself with an error. A death by signal
    is worded as torchrun words it ("Signal 9 (SIGKILL) received by PID ..."), so the same rules
    (the default pack's host-oom-killed) recognise both."""
    if status > 128 and status - 128 in _SIGNALS:
        signum = status - 128
        what = f"Signal {signum} ({_SIGNALS[signum]}) received by PID {pid} (the job, attempt {attempt}); " \
               f"exit status {status}"
    else:
        what = f"the job (PID {pid}, attempt {attempt}) exited with status {status}"
    return json.dumps({"log.level": "error", "log.logger": "faultwarden.run", "message": f"faultwarden: {what}",
                       "process.pid": pid, "process.exit_code": status})


_SIGNALS = {s.value: s.name for s in signal.Signals}


class Supervisor:
    def __init__(self, cmd: Sequence[str], log_path: str | Path, on_line: Callable[[Line], None],
                 env: Mapping[str, str] | None = None, cwd: str | None = None,
                 events_path: str | Path | None = None):
        if not cmd:
            raise ValueError("no command to run")
        self.cmd = list(cmd)
        self.log_path = Path(log_path)
        self.on_line = on_line
        self.env = dict(env or {})
        self.cwd = cwd
        self.attempt = 0
        self.argv: list[str] = []
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self._readers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab", buffering=0)
        self._size = self.log_path.stat().st_size
        self._line_no = _count_lines(self.log_path)
        self.events = FileFollower(Path(events_path), on_line, lambda: self.attempt) if events_path else None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, extra_args: Sequence[str] = (), extra_env: Mapping[str, str] | None = None) -> int:
        """Start the job (again); returns its pid. `extra_args` are appended to the command."""
        if self.running:
            raise RuntimeError("the job is still running")
        self.attempt += 1
        self.argv = self.cmd + list(extra_args)
        env = {**os.environ, "PYTHONUNBUFFERED": os.environ.get("PYTHONUNBUFFERED", "1"),
               **self.env, **(extra_env or {}), "FAULTWARDEN_ATTEMPT": str(self.attempt)}
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                     start_new_session=True, close_fds=True)
        self.started_at = time.time()
        attempt = self.attempt
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, "output", attempt),
                                          daemon=True, name="faultwarden-job-output")]
        for t in self._readers:
            t.start()
        if self.events is not None:
            self.events.start()
        return self.proc.pid

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poll(self) -> int | None:
        """The job's exit status once it has exited, else None."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        return None if rc is None else exit_code(rc)

    def output_done(self, timeout: float = 0.0) -> bool:
        """True once everything the job printed has been read (both pipes at EOF)."""
        deadline = time.monotonic() + timeout
        for t in self._readers:
            t.join(max(0.0, deadline - time.monotonic()))
        done = not any(t.is_alive() for t in self._readers)
        if done and self.events is not None and not self.running:
            self.events.catch_up()
        return done

    def reap(self) -> int:
        """After the job exited: read the rest of its output; children left holding the pipes
        past LINGER_S are killed with the group. Returns the exit status."""
        assert self.proc is not None
        rc = exit_code(self.proc.wait())
        if not self.output_done(LINGER_S):
            self._kill_group(signal.SIGKILL)
            self.output_done(LINGER_S)
        return rc

    def signal(self, sig: int) -> None:
        """Send a signal to the whole job (its process group)."""
        if self.proc is not None:
            self._kill_group(sig)

    def stop(self, grace_s: float) -> int | None:
        """SIGTERM to the group, SIGKILL after `grace_s`; returns the exit status (None if the
        job was not started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._kill_group(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._kill_group(signal.SIGKILL)
        else:
            # The leader is gone but children may remain in the group: take them too.
            self._kill_group(signal.SIGKILL)
        return self.reap()

    def capture_stacks(self, dest: Path) -> dict:
        """The job's Python stacks (py-spy dump) before it is stopped for a hang."""
        spy = shutil.which("py-spy")
        if spy is None or self.pid is None:
            return {"stacks": "py-spy not available"}
        try:
            out = subprocess.run([spy, "dump", "--pid", str(self.pid)], capture_output=True,
                                 timeout=PY_SPY_TIMEOUT_S, text=True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return {"stacks": f"py-spy failed: {exc}"}
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(out.stdout + out.stderr)
        return {"stacks": str(dest), "py_spy_exit": out.returncode}

    def note(self, text: str) -> None:
        """A line of faultwarden's own in job.log, after what the job printed (as torchrun and
        Slurm add theirs to a job's output): it reaches the callback like the job's lines, so
        rules see it, and `diagnose job.log` later sees the same."""
        self._append(text.rstrip("\n").encode() + b"\n", "faultwarden", self.attempt)

    def close(self) -> None:
        if self.events is not None:
            self.events.close()
        self._log.close()

    # --- internals -----------------------------------------------------------------------
    def _kill_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _read(self, pipe, stream: str, attempt: int) -> None:
        with pipe:
            for raw in iter(lambda: pipe.readline(MAX_LINE_BYTES), b""):
                if not raw.endswith(b"\n"):
                    raw += b"\n"  # the last line had none, or a record was cut: keep the file in lines
                self._append(raw, stream, attempt)

    def _append(self, raw: bytes, stream: str, attempt: int) -> None:
        text = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        with self._lock:  # one writer at a time, and callbacks in file order
            offset = self._size
            self._log.write(raw)
            self._size += len(raw)
            self._line_no += 1
            self.on_line(Line(text, stream, str(self.log_path), offset, self._line_no, attempt))


class FileFollower:
    """Follows one file only the job appends to: new complete lines go to the callback.

    A file that shrank was replaced or truncated: it is read again from the start."""

    def __init__(self, path: Path, on_line: Callable[[Line], None], attempt: Callable[[], int]):
        self.path = path
        self.on_line = on_line
        self.attempt = attempt
        self.pos = 0
        self.line_no = 0
        self._partial = b""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="faultwarden-job-events")
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            self.catch_up()

    def catch_up(self) -> None:
        """Read to the end of the file now."""
        with self._lock:
            try:
                with open(self.path, "rb") as fh:
                    size = fh.seek(0, os.SEEK_END)
                    if size < self.pos:
                        self.pos, self.line_no, self._partial = 0, 0, b""
                    fh.seek(self.pos)
                    data = fh.read(size - self.pos)
            except FileNotFoundError:
                return
            start = self.pos - len(self._partial)
            data = self._partial + data
            self.pos += len(data) - len(self._partial)
            *complete, self._partial = data.split(b"\n")
            for raw in complete:
                self.line_no += 1
                self.on_line(Line(raw.rstrip(b"\r").decode("utf-8", "replace"), "events", str(self.path),
                                  start, self.line_no, self.attempt()))
                start += len(raw) + 1

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def _count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            count += block.count(b"\n")
    return count
