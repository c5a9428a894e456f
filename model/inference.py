"""Time batch inference calls: one ``inference`` event per call (``ml.latency_ms``,
``ml.batch_size``), and a failing call as one error event.

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
"""
from __future__ import annotations

import functools
import sys
import time
from collections.abc import Mapping
from typing import Any, Callable

from faultwarden.model import logging as fwlog


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


class timed_inference:
    """Context manager timing one batch inference call.

    ``batch_size``, ``tokens`` and ``fields`` (extra dotted ECS fields) may be set on the object
    inside the block, once the batch is known. An exception is logged as one error event
    (``event.outcome: failure`` with ``error.*``, the latency and batch size) and re-raised; the
    excepthook will not log it a second time.
    """

    def __init__(self, batch_size: int | None = None, *, tokens: int | None = None,
                 cuda_sync: bool = False, **fields: Any) -> None:
        self.batch_size = batch_size
        self.tokens = tokens
        self.cuda_sync = cuda_sync
        self.fields = fields
        self.latency_ms: float | None = None
        self._start = 0.0

    def __enter__(self) -> "timed_inference":
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.cuda_sync and exc is None:
            _cuda_sync()
        self.latency_ms = (time.perf_counter() - self._start) * 1000.0
        if exc is None:
            fwlog.log_inference(self.latency_ms, self.batch_size, tokens=self.tokens, **self.fields)
        elif isinstance(exc, Exception):  # not KeyboardInterrupt/SystemExit: those are not a failed call
            numbers = {"ml.latency_ms": self.latency_ms}
            if self.batch_size is not None:
                numbers["ml.batch_size"] = self.batch_size
            fwlog.log_exception(
                exc,
                f"inference failed after {self.latency_ms:.6g} ms: {fwlog.qualified_name(exc_type)}: {exc}",
                **{"event.action": "inference", "event.outcome": "failure", **numbers, **self.fields},
            )
        return False


def instrument_inference(fn: Callable | None = None, *, batch_size: int | Callable[..., int] | None = None,
                         cuda_sync: bool = False, **fields: Any):
    """Decorator form of :class:`timed_inference`. ``batch_size``: a number, a function of the
    call's arguments, or None to read it from the first batch-like argument."""

    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if callable(batch_size):
                size = batch_size(*args, **kwargs)
            else:
                size = batch_size if batch_size is not None else batch_size_of(*args, **kwargs)
            with timed_inference(size, cuda_sync=cuda_sync, **fields):
                return func(*args, **kwargs)

        return wrapper

    return decorate(fn) if fn is not None else decorate


__all__ = ["batch_size_of", "instrument_inference", "timed_inference"]
