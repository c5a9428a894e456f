"""The whole pipeline in one place: tail → parse → detect → incidents → act, and → ship.

Every stage is a small object behind one narrow interface; this module only wires them, so the
live daemon (`service.py`) and `diagnose` run the same path and raise the same incidents.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from faultwarden.daemon.incidents import IncidentBook, Update
from faultwarden.detectors.finding import Detector, Event, Finding


class Sink(Protocol):
    """Where events go for investigation (Elasticsearch, or the local store)."""

    def submit(self, event: Event) -> None: ...


OnIncident = Callable[[Update], None]


class ModelError(Exception):
    """The configured anomaly model cannot be loaded; the message names the file and why."""


def detectors_for(ruleset, anomaly_model: str | None = None) -> list[Detector]:
    """The detect stage, the same for the daemon, `run -- CMD` and `diagnose`: the rule
    engine, plus the isolation forest when a model file is named."""
    from faultwarden.detectors.rules import RuleEngine

    detectors: list[Detector] = [RuleEngine(ruleset)]
    if anomaly_model:
        detectors.append(anomaly_detector(anomaly_model))
    return detectors


def anomaly_detector(model_file: str) -> Detector:
    """The isolation forest of a model file; ModelError says which file and why it cannot."""
    from faultwarden.detectors.anomaly import AnomalyDetector, load

    try:
        return AnomalyDetector(load(model_file))
    except Exception as exc:  # a missing, foreign or damaged model file
        why = str(exc) if str(exc).startswith(str(model_file)) else f"{model_file}: {exc}"
        raise ModelError(f"cannot load the anomaly model: {why}") from None


@dataclass
class Counters:
    events: int = 0
    parse_errors: int = 0
    findings: int = 0


@dataclass
class Pipeline:
    detectors: list[Detector]
    book: IncidentBook
    on_incident: OnIncident | None = None
    counters: Counters = field(default_factory=Counters)

    def feed(self, event: Event) -> list[Update]:
        """Detect on one parsed event; returns what it did to the incident book."""
        self.counters.events += 1
        if "parse_error" in event.get("tags", ()):
            self.counters.parse_errors += 1
        return self._handle(f for d in self.detectors for f in d.observe(event))

    def tick(self, now: float) -> list[Update]:
        """Let time pass with no event, so that silence (a hang) is seen."""
        return self._handle(f for d in self.detectors for f in d.tick(now))

    def flush(self) -> list[Update]:
        """End of input: detectors that hold windows open (the isolation forest) close them."""
        return self._handle(f for d in self.detectors if hasattr(d, "flush") for f in d.flush())

    def _handle(self, findings: Iterable[Finding]) -> list[Update]:
        updates = []
        for finding in findings:
            self.counters.findings += 1
            update = self.book.record(finding)
            updates.append(update)
            if self.on_incident is not None:
                self.on_incident(update)
        return updates
