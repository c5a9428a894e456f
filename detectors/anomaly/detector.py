"""`AnomalyDetector`: the `Detector` the pipeline feeds, around one fitted `AnomalyModel`."""
from __future__ import annotations

from typing import Any, Iterable, Iterator

from faultwarden.detectors.anomaly.model import AnomalyModel
from faultwarden.detectors.anomaly.windows import Window
from faultwarden.detectors.finding import Event, Finding

STATE_VERSION = 1
BATCH = 512   # windows scored per forest call in `scan` (one call costs about as much as 100 rows)


class AnomalyDetector:
    """Feeds events to the model's windows; a closed window that scores as anomalous is a finding.

    `observe` sees events in order, `tick(now)` closes windows whose time is up (idle sessions,
    time windows) by the wall clock, `flush()` closes every window at the end of the input
    (`diagnose`, `anomaly score`). `state()` keeps the open windows as JSON (running summaries,
    not events), so a restart goes on where it was; state saved under another model is dropped.
    """

    def __init__(self, model: AnomalyModel):
        self.model = model
        self.windower = model.windower()
        self.windows_scored = 0
        self.findings_made = 0

    def observe(self, event: Event) -> list[Finding]:
        return self._score(self.windower.add(event))

    def tick(self, now: float) -> list[Finding]:
        return self._score(self.windower.expire(now))

    def flush(self) -> list[Finding]:
        return self._score(self.windower.flush())

    def scan(self, events: Iterable[Event]) -> Iterator[Finding]:
        """The findings of a whole input, end included: like observe + flush, scored in batches."""
        pending: list[Window] = []
        for event in events:
            pending.extend(self.windower.add(event))
            if len(pending) >= BATCH:
                yield from self._score(pending)
                pending = []
        pending.extend(self.windower.flush())
        yield from self._score(pending)

    def state(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "model": self.model.name, "fingerprint": self.model.fingerprint,
                "windows_scored": self.windows_scored, "findings": self.findings_made,
                "windows": self.windower.state()}

    def restore(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION or state.get("fingerprint") != self.model.fingerprint:
            return   # another model (refitted, replaced): its open windows mean nothing to this one
        self.windows_scored = int(state.get("windows_scored", 0))
        self.findings_made = int(state.get("findings", 0))
        self.windower.restore(state.get("windows", {}))

    def _score(self, windows: list[Window]) -> list[Finding]:
        if not windows:
            return []
        self.windows_scored += len(windows)
        findings = self.model.findings(windows)
        self.findings_made += len(findings)
        return findings
