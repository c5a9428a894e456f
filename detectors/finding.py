"""What a detector reports: a `Finding`, small and typed. The daemon turns findings into
incidents; detectors never see incidents."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

SEVERITIES = ("info", "warning", "error", "critical")
FAULTS = (
    "cuda_oom", "nan_inf", "loss_spike", "nccl_timeout", "gpu_hardware", "cuda_kernel_error",
    "host_oom_killed", "disk_full", "checkpoint_corrupt", "distributed_worker_failure",
    "data_error", "hang", "latency_slo", "error_rate", "throughput_drop", "anomaly",
)

Event = Mapping[str, Any]
"""An event: dotted ECS field names to values (`@timestamp` in epoch seconds, `ml.loss`, ...)."""


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


@dataclass(frozen=True)
class Where:
    """Where the first evidence of a finding was read."""

    path: str | None = None
    line: int | None = None
    offset: int | None = None

    @classmethod
    def of(cls, event: Event) -> "Where":
        return cls(event.get("log.file.path"), event.get("log.file.line"), event.get("log.offset"))


@dataclass(frozen=True)
class Finding:
    rule: str
    fault: str
    severity: str
    group: Mapping[str, Any]
    time: float
    source: Where
    message: str
    advice: str = ""
    actions: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    explanation: Mapping[str, Any] = field(default_factory=dict)
    realert_s: float | None = None


class Detector(Protocol):
    """A detector sees events in order and reports findings; `tick` lets silence be seen."""

    def observe(self, event: Event) -> list[Finding]: ...

    def tick(self, now: float) -> list[Finding]: ...

    def state(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> None: ...
