"""Structured logging for the ML job itself: ECS JSON lines that faultwarden reads.

One line in the job::

    from faultwarden.model import logging as fw
    fw.configure()                 # file from $FAULTWARDEN_LOG_PATH, run id from $FAULTWARDEN_RUN_ID
    fw.log_step(step, loss=loss, grad_norm=gn, learning_rate=lr)

What every line carries: ``@timestamp``, ``log.level``, ``message``, ``log.logger``,
``service.name``, ``host.name``, ``process.pid``, ``labels.run_id`` (when known), ``ml.rank``,
``ml.local_rank``, ``ml.world_size`` (from ``torch.distributed`` once it is initialised, else from
the ``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` variables torchrun sets, else 0/0/1), and
``event.action`` for the events this module writes (``train-step``, ``inference``,
``checkpoint-saved``, ``memory``, ``uncaught-exception``).

NaN and infinity: ECS JSON has no way to hold them, and faultwarden must see a NaN loss as NaN,
not as a missing field. They are written as the bare JSON tokens ``NaN``, ``Infinity`` and
``-Infinity`` (what Python's ``json`` writes and reads by default), e.g. ``"ml":{"loss":NaN}``.
faultwarden's parser turns them back into floats; strict JSON readers (Filebeat, ``jq``) reject
such a line, so ship through faultwarden, which nulls them for Elasticsearch and lists them in
``ml.non_finite``.

This module never imports torch, transformers, ``faultwarden.daemon`` or
``faultwarden.detectors``: it looks torch up in ``sys.modules`` (if the job has not imported
torch, there is no process group and no CUDA memory to report).

The logger is private to faultwarden: the global ``structlog.configure`` and the standard
``logging`` module are left to the job.
"""
from __future__ import annotations

import logging as _stdlib_logging
import json
import math
import os
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import structlog
from ecs_logging._meta import ECS_VERSION

from faultwarden.model.checkpoint import CheckpointDigest, OpenCheckpoint, open_checkpoint

ENV_LOG_PATH = "FAULTWARDEN_LOG_PATH"
ENV_RUN_ID = "FAULTWARDEN_RUN_ID"
LOGGER_NAME = "faultwarden.model"

# "off" writes nothing at all (not even uncaught exceptions).
LEVELS = {
    "debug": _stdlib_logging.DEBUG,
    "info": _stdlib_logging.INFO,
    "warning": _stdlib_logging.WARNING,
    "error": _stdlib_logging.ERROR,
    "critical": _stdlib_logging.CRITICAL,
    "off": None,
}
INFO = _stdlib_logging.INFO

# Marks an exception already written as an error event (by the inference timer), so that the
# excepthook does not write the same exception twice when it then goes uncaught.
_LOGGED_MARK = "_faultwarden_logged"


# ---------------------------------------------------------------------------------------------
# Where lines go
# ---------------------------------------------------------------------------------------------
class _LineSink:
    """The last link of the structlog chain: writes each rendered line.

    The file is opened O_APPEND and each line goes out in one ``os.write``: several ranks (or a
    forked DataLoader worker) appending to one file never interleave inside a line, and nothing
    sits in a buffer when the process dies.
    """

    def __init__(self, path: str | None, stdout: bool) -> None:
        self.path = path
        self.stdout = stdout
        self._fd: int | None = None
        self._failed = False
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def msg(self, line: str) -> None:
        data = line + "\n"
        if self._fd is not None:
            self._write_file(data.encode("utf-8"))
        if self.stdout:
            out = sys.stdout  # looked up each time: the job (or pytest) may swap it
            out.write(data)
            out.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg

    def _write_file(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:
            # A full disk must not kill the training job through its logging; say so once on
            # stderr (which the supervisor also reads) and keep training.
            if not self._failed:
                self._failed = True
                print(f"faultwarden: cannot write log {self.path}: {exc}", file=sys.stderr)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Off:
    """The logger when ``level="off"``: every method returns at once."""

    def _nop(self, *args: Any, **kwargs: Any) -> None:
        return None

    debug = info = warning = warn = error = critical = exception = fatal = msg = log = _nop

    def bind(self, **kwargs: Any) -> "_Off":
        return self

    new = unbind = try_unbind = bind

    def is_enabled_for(self, level: int) -> bool:
        return False


# ---------------------------------------------------------------------------------------------
# Processors (structlog: callables (logger, method, event_dict) -> event_dict)
# ---------------------------------------------------------------------------------------------
def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


class _Context:
    """Adds who wrote the line. Fields the caller passed win (setdefault)."""

    def __init__(self, static: dict[str, Any]) -> None:
        self.static = static
        self.env_rank = (_env_int("RANK", 0), _env_int("WORLD_SIZE", 1))
        self.local_rank = _env_int("LOCAL_RANK", 0)
        self.dist_rank: tuple[int, int] | None = None  # cached once the process group exists

    def rank(self) -> tuple[int, int]:
        if self.dist_rank is None:
            torch = sys.modules.get("torch")
            dist = getattr(torch, "distributed", None) if torch is not None else None
            try:
                if dist is not None and dist.is_available() and dist.is_initialized():
                    self.dist_rank = (dist.get_rank(), dist.get_world_size())
            except Exception:  # a half-torn-down process group must not stop a log line
                pass
        return self.dist_rank or self.env_rank

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        for key, value in self.static.items():
            event.setdefault(key, value)
        event.setdefault("process.pid", os.getpid())  # not cached: forked workers have their own
        rank, world_size = self.rank()
        event.setdefault("ml.rank", rank)
        event.setdefault("ml.local_rank", self.local_rank)
        event.setdefault("ml.world_size", world_size)
        return event


def qualified_name(exc_type: type) -> str:
    """``torch.OutOfMemoryError``, ``ValueError``: the name as Python's traceback prints it."""
    module = getattr(exc_type, "__module__", None)
    if module in (None, "builtins", "__main__"):
        return exc_type.__qualname__
    return f"{module}.{exc_type.__qualname__}"


def _exception_fields(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """``exc_info=`` (True, an exception, or a sys.exc_info() tuple) -> ``error.*`` fields."""
    exc_info = event.pop("exc_info", None)
    if not exc_info:
        return event
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    exc_type, value, tb = exc_info
    if exc_type is None:
        return event
    event.setdefault("error.type", qualified_name(exc_type))
    event.setdefault("error.message", str(value))
    event.setdefault("error.stack_trace", "".join(traceback.format_exception(exc_type, value, tb)))
    return event


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars -> Python numbers (the formatter would write their repr)."""
    if value is None or isinstance(value, (int, float, str)):
        return value
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return value


def _plain_numbers(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if not isinstance(value, (int, float, str)) and value is not None:
            event[key] = _plain(value)
    return event


def _nest(event: dict[str, Any]) -> dict[str, Any]:
    """Dotted names -> nested objects, in one pass into fresh dicts (ecs-logging's formatter
    merges key by key at several times the cost; this is the hot path of a step line)."""
    nested: dict[str, Any] = {}
    for key, value in event.items():
        if "." not in key:
            if not isinstance(nested.get(key), dict):
                nested[key] = dict(value) if isinstance(value, dict) else value  # never the caller's
            elif isinstance(value, dict):
                nested[key].update(value)
            else:
                nested[f"{key}_value"] = value  # a scalar where an object already is
            continue
        *parents, leaf = key.split(".")
        node = nested
        for parent in parents:
            child = node.setdefault(parent, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            if not isinstance(node.get(leaf), dict):
                node[leaf] = value
                continue
        # A scalar where an object goes (``labels="x"`` beside ``labels.run_id``), or the other
        # way round: keep the value under an undotted name rather than raise into the job.
        nested[key.replace(".", "_")] = value
    return nested


def _fallback(value: Any) -> Any:
    """What json cannot write: structlog's ``__structlog__`` if it has one, else its repr."""
    render = getattr(value, "__structlog__", None)
    return render() if callable(render) else repr(value)


_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_fallback, ensure_ascii=True).encode
_second: tuple[int, str] = (-1, "")


def _timestamp(now: float) -> str:
    """``2024-05-01T12:00:00.123Z`` (UTC, milliseconds truncated, as ecs-logging writes it); the
    part up to the second is formatted once a second."""
    global _second
    whole = int(now)
    second, prefix = _second
    if whole != second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, prefix)
    return f"{prefix}.{int((now - whole) * 1000):03d}Z"


def _ecs_json(_logger: Any, method: str, event: dict[str, Any]) -> str:
    """The last processor: one ECS JSON line, as ecs-logging's ``StructlogFormatter`` writes it
    (``@timestamp``, ``log.level``, ``message`` first, then the rest nested with sorted keys,
    ``ecs.version``), at a third of its cost: this runs once per training step."""
    message = str(event.pop("event", ""))
    stamp = event.pop("@timestamp", None)
    nested = _nest(event)
    log = nested.get("log")
    level = log.pop("level", method.lower()) if isinstance(log, dict) else method.lower()
    if isinstance(log, dict) and not log:
        del nested["log"]
    if "exception" in nested:  # structlog's format_exc_info, if a job's processors add it
        error = nested.setdefault("error", {})
        if isinstance(error, dict):
            error["stack_trace"] = nested.pop("exception")
    nested.setdefault("ecs.version", ECS_VERSION)
    head = (f'{{"@timestamp":{_encode(stamp if stamp is not None else _timestamp(time.time()))},'
            f'"log.level":{_encode(level)},"message":{_encode(message)}')
    return f"{head},{_encode(nested)[1:]}"


# ---------------------------------------------------------------------------------------------
# configure / get_logger
# ---------------------------------------------------------------------------------------------
@dataclass
class _Setup:
    key: tuple
    logger: Any
    sink: _LineSink | None


_state: _Setup | None = None
_lock = threading.RLock()
_previous_hooks: dict[str, Any] = {}


def _default_service() -> str:
    main = Path(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c", "-") else None
    if main is None:
        return "python"
    return main.parent.name if main.stem == "__main__" else main.stem


def configure(
    path: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
    service: str | None = None,
    stdout: bool | None = None,
    level: str = "info",
):
    """Set up faultwarden's logger for this process and return it (a structlog bound logger).

    - ``path``: the JSON-lines file, appended to; default ``$FAULTWARDEN_LOG_PATH``.
    - ``run_id``: written as ``labels.run_id``; default ``$FAULTWARDEN_RUN_ID``.
    - ``service``: ``service.name``; default the script's name (``train`` for ``train.py``).
    - ``stdout``: also write the lines to stdout; default: only when there is no file.
    - ``level``: ``debug|info|warning|error|critical|off``. Events below it cost one method call
      and are never formatted.

    Also installs ``sys.excepthook`` and ``threading.excepthook`` so that an uncaught exception
    becomes one error event (``error.type`` qualified, ``error.message``, ``error.stack_trace``)
    before the previous hook prints it as usual.

    Safe in every rank and safe to call again: the same arguments return the same logger; new
    ones replace the old sink; the hooks are installed once.

    NaN/inf numbers are written as the JSON tokens ``NaN``/``Infinity``/``-Infinity`` (see the
    module docstring).
    """
    global _state
    path = os.fspath(path) if path is not None else (os.environ.get(ENV_LOG_PATH) or None)
    run_id = run_id if run_id is not None else (os.environ.get(ENV_RUN_ID) or None)
    service = service or _default_service()
    stdout = (path is None) if stdout is None else bool(stdout)
    level = level.lower()
    if level not in LEVELS:
        raise ValueError(f"level {level!r} is not one of {', '.join(LEVELS)}")
    key = (os.path.abspath(path) if path else None, run_id, service, stdout, level)
    with _lock:
        if _state is not None and _state.key == key:
            return _state.logger
    # A checkpoint still being hashed belongs in the file it was saved under.
    wait_for_checkpoints()
    with _lock:
        if _state is not None and _state.key == key:
            return _state.logger
        previous = _state
        levelno = LEVELS[level]
        if levelno is None:
            _state = _Setup(key, _Off(), None)
        else:
            static: dict[str, Any] = {
                "log.logger": LOGGER_NAME,
                "service.name": service,
                "host.name": socket.gethostname(),
            }
            if run_id:
                static["labels.run_id"] = run_id
            sink = _LineSink(path, stdout)
            processors = [_Context(static), _exception_fields, _plain_numbers, _ecs_json]
            wrapper = structlog.make_filtering_bound_logger(levelno)
            _state = _Setup(key, wrapper(sink, processors=processors, context={}), sink)
        # Closed after the new file is open, so that its descriptor number cannot be reused
        # under a thread still holding the old logger.
        if previous is not None and previous.sink is not None:
            previous.sink.close()
        _install_hooks()
        return _state.logger


def get_logger(name: str | None = None):
    """faultwarden's logger (configured from the environment on first use), for the job's own
    events: ``get_logger("train").info("resumed", **{"ml.step": 1200})``."""
    state = _state  # one read, no lock: this runs on every event
    logger = state.logger if state is not None else configure()
    return logger.bind(**{"log.logger": name}) if name else logger


def reset() -> None:
    """Close the sink and remove the hooks (tests; a job never needs it)."""
    global _state
    wait_for_checkpoints()
    with _lock:
        if _state is not None and _state.sink is not None:
            _state.sink.close()
        _state = None
        # A hook that something else has wrapped since (torch.distributed's init_process_group
        # does) stays in its chain, inert while nothing is configured.
        if getattr(sys.excepthook, "_faultwarden", False):
            sys.excepthook = _previous_hooks.pop("sys")
        if getattr(threading.excepthook, "_faultwarden", False):
            threading.excepthook = _previous_hooks.pop("threading")


def is_enabled(level: int = INFO) -> bool:
    return get_logger().is_enabled_for(level)


# ---------------------------------------------------------------------------------------------
# Uncaught exceptions
# ---------------------------------------------------------------------------------------------
def log_exception(exc: BaseException, message: str | None = None, level: str = "error", **fields: Any) -> None:
    """Write ``exc`` as one error event and mark it, so the excepthook will not write it again."""
    try:
        name = qualified_name(type(exc))
        getattr(get_logger(), level)(message or f"{name}: {exc}", exc_info=exc, **fields)
        setattr(exc, _LOGGED_MARK, True)
    except Exception:  # logging a crash must never hide the crash
        pass


def _log_uncaught(exc: BaseException | None, **fields: Any) -> None:
    if _state is None or exc is None or getattr(exc, _LOGGED_MARK, False):
        return
    # Ctrl-C is a person stopping the job, not a fault: a warning, still with error.* fields.
    level = "warning" if isinstance(exc, KeyboardInterrupt) else "error"
    log_exception(exc, level=level, **{"event.action": "uncaught-exception", **fields})


# Set while one of our hooks runs in this thread: should a chain of hooks ever lead back to ours
# (a hook that wrapped ours, then ours installed again over it), the loop ends at the default.
_in_hook = threading.local()


def _sys_excepthook(exc_type, value, tb) -> None:
    if getattr(_in_hook, "active", False):
        sys.__excepthook__(exc_type, value, tb)
        return
    _in_hook.active = True
    try:
        if value is not None and value.__traceback__ is None:
            value = value.with_traceback(tb)
        _log_uncaught(value)
        _previous_hooks.get("sys", sys.__excepthook__)(exc_type, value, tb)
    finally:
        _in_hook.active = False


def _threading_excepthook(args) -> None:
    if getattr(_in_hook, "active", False):
        threading.__excepthook__(args)
        return
    _in_hook.active = True
    try:
        # SystemExit in a thread is a normal way to end it; the default hook ignores it too.
        if args.exc_type is not SystemExit and args.exc_value is not None:
            name = args.thread.name if args.thread is not None else None
            _log_uncaught(args.exc_value, **({"process.thread.name": name} if name else {}))
        _previous_hooks.get("threading", threading.__excepthook__)(args)
    finally:
        _in_hook.active = False


_sys_excepthook._faultwarden = True  # type: ignore[attr-defined]
_threading_excepthook._faultwarden = True  # type: ignore[attr-defined]


def _install_hooks() -> None:
    # Once per process: our hooks read the current configuration, so a new configure() needs no
    # new hook, and installing again over a hook that wrapped ours would make a loop.
    if "sys" not in _previous_hooks:
        _previous_hooks["sys"] = sys.excepthook
        sys.excepthook = _sys_excepthook
    if "threading" not in _previous_hooks:
        _previous_hooks["threading"] = threading.excepthook
        threading.excepthook = _threading_excepthook


# ---------------------------------------------------------------------------------------------
# Event helpers (design.md's ml.* names)
# ---------------------------------------------------------------------------------------------
def _numbers(values: dict[str, Any]) -> dict[str, Any]:
    return {key: _plain(value) for key, value in values.items() if value is not None}


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


_process = None


def memory_fields() -> dict[str, int]:
    """``ml.memory.rss_bytes`` of this process; CUDA allocated/reserved bytes of the current
    device when the job has already initialised CUDA (never initialises it here)."""
    global _process
    import psutil  # lazily: 45 ms of import a job that never asks for memory should not pay

    if _process is None or _process.pid != os.getpid():
        _process = psutil.Process()
    fields = {"ml.memory.rss_bytes": _process.memory_info().rss}
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    try:
        if cuda is not None and cuda.is_initialized():
            fields["ml.memory.gpu_allocated_bytes"] = cuda.memory_allocated()
            fields["ml.memory.gpu_reserved_bytes"] = cuda.memory_reserved()
    except Exception:  # a broken device is for the error path to report, not the memory line
        pass
    return fields


def log_step(
    step: int,
    *,
    loss: Any = None,
    grad_norm: Any = None,
    learning_rate: Any = None,
    epoch: Any = None,
    step_time_s: Any = None,
    samples_per_s: Any = None,
    tokens_per_s: Any = None,
    loss_scale: Any = None,
    memory: bool = False,
    action: str = "train-step",
    message: str | None = None,
    **fields: Any,
) -> None:
    """One training-step event. Tensors are fine (``.item()`` is called, which waits for the
    device). ``memory=True`` adds the ``ml.memory.*`` fields. Extra ECS fields go in ``fields``
    as dotted names: ``log_step(7, loss=l, **{"labels.dataset": "c4"})``."""
    logger = get_logger()
    if not logger.is_enabled_for(INFO):
        return
    event = _numbers({
        "ml.step": step,
        "ml.loss": loss,
        "ml.grad_norm": grad_norm,
        "ml.learning_rate": learning_rate,
        "ml.epoch": epoch,
        "ml.step_time_s": step_time_s,
        "ml.samples_per_s": samples_per_s,
        "ml.tokens_per_s": tokens_per_s,
        "ml.loss_scale": loss_scale,
    })
    if memory:
        event.update(memory_fields())
    event["event.action"] = action
    event.update(fields)
    if message is None:
        shown = [f"{name}={_fmt(event[f'ml.{name}'])}" for name in ("loss", "grad_norm", "learning_rate")
                 if f"ml.{name}" in event]
        message = " ".join([f"step {_fmt(event['ml.step'])}", *shown])
    logger.info(message, **event)


def log_inference(
    latency_ms: Any,
    batch_size: Any = None,
    *,
    tokens: Any = None,
    action: str = "inference",
    message: str | None = None,
    **fields: Any,
) -> None:
    """One batch-inference event: ``ml.latency_ms``, ``ml.batch_size``, and ``ml.tokens_per_s``
    when ``tokens`` (generated or processed in the batch) is given."""
    logger = get_logger()
    if not logger.is_enabled_for(INFO):
        return
    latency_ms = _plain(latency_ms)
    tokens = _plain(tokens)
    event = _numbers({"ml.latency_ms": latency_ms, "ml.batch_size": batch_size})
    if tokens is not None and latency_ms and math.isfinite(latency_ms):
        event["ml.tokens_per_s"] = tokens / (latency_ms / 1000.0)
    event["event.action"] = action
    event.setdefault("event.outcome", "success")
    event.update(fields)
    if message is None:
        size = f" of {event['ml.batch_size']}" if "ml.batch_size" in event else ""
        message = f"inference batch{size} in {_fmt(float(latency_ms))} ms"
    logger.info(message, **event)


def log_checkpoint(
    path: str | os.PathLike[str],
    step: int,
    *,
    files: Iterable[str] | None = None,
    **fields: Any,
) -> CheckpointDigest | None:
    """A ``checkpoint-saved`` event with ``ml.checkpoint.path|step|sha256|size_bytes`` (and
    ``ml.checkpoint.files`` for a folder). ``files`` picks the folder's files to fingerprint
    (relative paths); default all of them. See ``faultwarden.model.checkpoint`` for the digest.

    A checkpoint that cannot be read right after it was saved is itself a fault: it is logged
    as an error event (``event.outcome: failure``) and None is returned, rather than raising
    into the training loop. Nothing is hashed when logging is off."""
    logger = get_logger()
    if not logger.is_enabled_for(INFO):
        return None
    opened = _open_checkpoint(logger, path, step, files, fields)
    return _hash_and_log(logger, opened, step, fields) if opened is not None else None


def log_checkpoint_in_background(
    path: str | os.PathLike[str],
    step: int,
    *,
    files: Iterable[str] | None = None,
    **fields: Any,
) -> Future:
    """``log_checkpoint`` without the wait: the files are opened now (a checkpoint that cannot be
    opened is an error event now), hashed and logged on one background thread, in the order they
    were saved. Returns a Future of what ``log_checkpoint`` returns.

    Open files stay readable when they are deleted, so rotation (``save_total_limit``) racing
    the hash does not fail it. ``wait_for_checkpoints()`` waits for every pending one; so does
    the interpreter at exit (a crash after a save still logs the save)."""
    logger = get_logger()
    done: Future = Future()
    if not logger.is_enabled_for(INFO):
        done.set_result(None)
        return done
    opened = _open_checkpoint(logger, path, step, files, fields)
    if opened is None:
        done.set_result(None)
        return done
    with _lock:
        global _hasher, _hasher_pid
        if _hasher is None or _hasher_pid != os.getpid():   # a forked child has no thread of ours
            _hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faultwarden-checkpoint")
            _hasher_pid = os.getpid()
        future = _hasher.submit(_hash_and_log, logger, opened, step, fields)
        _pending.add(future)
        future.add_done_callback(_forget)
    return future


def wait_for_checkpoints(timeout: float | None = None) -> bool:
    """Wait until every checkpoint handed to ``log_checkpoint_in_background`` is logged; False if
    some are still pending after ``timeout`` seconds."""
    with _lock:
        pending = list(_pending)
    if not pending:
        return True
    _done, not_done = wait_futures(pending, timeout=timeout)
    return not not_done


_hasher: ThreadPoolExecutor | None = None
_hasher_pid: int | None = None
_pending: set[Future] = set()


def _forget(future: Future) -> None:
    with _lock:
        _pending.discard(future)


def _open_checkpoint(logger: Any, path, step, files, fields) -> OpenCheckpoint | None:
    location = os.path.abspath(os.fspath(path))
    try:
        return open_checkpoint(location, files)
    except OSError as exc:
        failed = {**_checkpoint_base(location, step), "event.outcome": "failure", **fields}
        logger.error(f"checkpoint {location} at step {step} cannot be read: {exc}", exc_info=exc, **failed)
        return None


def _checkpoint_base(location: str, step: Any) -> dict[str, Any]:
    return {"event.action": "checkpoint-saved", "ml.checkpoint.path": location, "ml.checkpoint.step": _plain(step)}


def _hash_and_log(logger: Any, opened: OpenCheckpoint, step: Any, fields: dict[str, Any]) -> CheckpointDigest | None:
    base = _checkpoint_base(opened.path, step)
    try:
        found = opened.digest()
    except OSError as exc:
        failed = {**base, "event.outcome": "failure", **fields}
        logger.error(f"checkpoint {opened.path} at step {step} cannot be read: {exc}", exc_info=exc, **failed)
        return None
    event = {
        **base,
        "event.outcome": "success",
        "ml.checkpoint.sha256": found.sha256,
        "ml.checkpoint.size_bytes": found.size_bytes,
    }
    if found.files:
        event["ml.checkpoint.files"] = list(found.files)
    event.update(fields)
    logger.info(f"checkpoint saved at step {step}: {opened.path}", **event)
    return found


def log_memory(**fields: Any) -> None:
    """A ``memory`` event with the ``ml.memory.*`` fields."""
    logger = get_logger()
    if not logger.is_enabled_for(INFO):
        return
    event = {**memory_fields(), "event.action": "memory", **fields}
    logger.info(f"rss {event['ml.memory.rss_bytes']} bytes", **event)


__all__ = [
    "ENV_LOG_PATH",
    "ENV_RUN_ID",
    "configure",
    "get_logger",
    "is_enabled",
    "log_checkpoint",
    "log_checkpoint_in_background",
    "log_exception",
    "log_inference",
    "log_memory",
    "log_step",
    "memory_fields",
    "qualified_name",
    "reset",
    "wait_for_checkpoints",
]
