"""Time batch inference calls: one ``inference`` event per call (``ml.latency_ms``,
``ml.batch_size``, ``ml.samples_per_s``, ``ml.memory.*``), a failing call as one error event,
and sampling when calls come faster than the log should grow.

As a context manager::

    with timed_inference(batch_size=len(texts)) as call:
        out = model(**batch)
        call.tokens = out.shape[0] * out.shape[1]     # optional, gives ml.tokens_per_s

As a decorator (the batch size is read from the first argument that looks like a batch: a
list/tuple, anything with ``.shape``, or a mapping of those, such as a tokenizer's output)::

    @instrument_inference
    def predict(batch): ...

    @instrument_inference(batch_size=lambda texts, **kw: len(texts), cuda_sync=True)
    def predict(texts, max_new_tokens=32): ...

CUDA runs asynchronously: unless the call ends by copying its result to the host, pass
``cuda_sync=True`` so the clock stops after the device has finished (one synchronisation).

Sampling: successful calls are written at most ``max_events_per_s`` a second on average, in
bursts of as many (default 50, per process; ``configure_sampling``), so a server doing
thousands of batches a second writes 50 lines, not thousands. A call that is not written is
counted: the next written event carries ``ml.inference.skipped`` (calls since the last event
that were not written) and ``ml.latency_max_ms`` (the slowest of those calls and itself), so a
latency spike is never sampled away. A failed call is always written. Under the rate, every
call is written.
"""
from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable

from faultwarden.model import logging as fwlog

DEFAULT_MAX_EVENTS_PER_S = 50.0


def _cuda_sync() -> None:
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    if cuda is not None and cuda.is_initialized():
        cuda.synchronize()


def batch_size_of(*args: Any, **kwargs: Any) -> int | None:
    """The leading dimension of the first batch-like argument, else None."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, Mapping):
            value = next((v for v in value.values() if hasattr(v, "shape")), None)
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) > 0:
            return int(shape[0])
        if isinstance(value, (list, tuple)):
            return len(value)
    return None


class Sampling:
    """Which successful calls are written: a token bucket of ``max_events_per_s`` events a second
    with bursts of as many (None: every call is written).

    A burst of calls is written whole; calls beyond the rate are folded into the next written
    event (``ml.inference.skipped``, ``ml.latency_max_ms``). Thread-safe. ``clock`` is
    ``time.monotonic`` (tests pass their own).
    """

    def __init__(self, max_events_per_s: float | None = DEFAULT_MAX_EVENTS_PER_S, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_events_per_s is not None and not max_events_per_s > 0:
            raise ValueError(f"max_events_per_s must be > 0 or None, not {max_events_per_s!r}")
        self.rate = max_events_per_s
        self.burst = None if max_events_per_s is None else max(1.0, float(max_events_per_s))
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._at: float | None = None
        self._skipped = 0
        self._worst_ms = 0.0

    def admit(self, latency_ms: float) -> dict[str, Any] | None:
        """The fields to add if this call is written now, or None if it is folded into a later one."""
        if self.rate is None:
            return {}
        now = self.clock()
        with self._lock:
            if self._at is not None:
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1.0:
                self._skipped += 1
                self._worst_ms = max(self._worst_ms, latency_ms)
                return None
            self._tokens -= 1.0
            if not self._skipped:
                return {}
            fields = {"ml.inference.skipped": self._skipped, "ml.latency_max_ms": max(self._worst_ms, latency_ms)}
            self._skipped, self._worst_ms = 0, 0.0
            return fields


_sampling = Sampling()


def configure_sampling(max_events_per_s: float | None = DEFAULT_MAX_EVENTS_PER_S) -> Sampling:
    """Set the process-wide sampling of inference events (None: write every call)."""
    global _sampling
    _sampling = Sampling(max_events_per_s)
    return _sampling


class timed_inference:
    """Context manager timing one batch inference call.

    ``batch_size``, ``tokens`` and ``fields`` (extra dotted ECS fields) may be set on the object
    inside the block, once the batch is known. ``memory``: add ``ml.memory.*`` to the event.
    ``sampling``: a ``Sampling`` of its own (default: the process-wide one). An exception is
    logged as one error event (``event.outcome: failure`` with ``error.*``, the latency and
    batch size), never sampled away, and re-raised; the excepthook will not log it a second time.
    """

    def __init__(self, batch_size: int | None = None, *, tokens: int | None = None,
                 cuda_sync: bool = False, memory: bool = True, sampling: Sampling | None = None,
                 **fields: Any) -> None:
        self.batch_size = batch_size
        self.tokens = tokens
        self.cuda_sync = cuda_sync
        self.memory = memory
        self.sampling = sampling
        self.fields = fields
        self.latency_ms: float | None = None
        self.logged = False
        self._start = 0.0

    def __enter__(self) -> "timed_inference":
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.cuda_sync and exc is None:
            _cuda_sync()
        self.latency_ms = (time.perf_counter() - self._start) * 1000.0
        if exc is None:
            self._log_success()
        elif isinstance(exc, Exception):  # not KeyboardInterrupt/SystemExit: those are not a failed call
            numbers = {"ml.latency_ms": self.latency_ms}
            if self.batch_size is not None:
                numbers["ml.batch_size"] = self.batch_size
            if self.memory:
                numbers.update(fwlog.memory_fields())
            fwlog.log_exception(
                exc,
                f"inference failed after {self.latency_ms:.6g} ms: {fwlog.qualified_name(exc_type)}: {exc}",
                **{"event.action": "inference", "event.outcome": "failure", **numbers, **self.fields},
            )
            self.logged = True
        return False

    def _log_success(self) -> None:
        if not fwlog.is_enabled():
            return
        extra = (self.sampling or _sampling).admit(self.latency_ms)
        if extra is None:
            return
        if self.batch_size and self.latency_ms > 0:
            extra["ml.samples_per_s"] = self.batch_size / (self.latency_ms / 1000.0)
        if self.memory:
            extra.update(fwlog.memory_fields())
        fwlog.log_inference(self.latency_ms, self.batch_size, tokens=self.tokens, **extra, **self.fields)
        self.logged = True


def instrument_inference(fn: Callable | None = None, *, batch_size: int | Callable[..., int] | None = None,
                         cuda_sync: bool = False, memory: bool = True, sampling: Sampling | None = None,
                         **fields: Any):
    """Decorator form of :class:`timed_inference`. ``batch_size``: a number, a function of the
    call's arguments, or None to read it from the first batch-like argument."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if callable(batch_size):
                size = batch_size(*args, **kwargs)
            else:
                size = batch_size if batch_size is not None else batch_size_of(*args, **kwargs)
            with timed_inference(size, cuda_sync=cuda_sync, memory=memory, sampling=sampling, **fields):
                return func(*args, **kwargs)

        return wrapper

    return decorate(fn) if fn is not None else decorate


__all__ = ["Sampling", "batch_size_of", "configure_sampling", "instrument_inference", "timed_inference"]
