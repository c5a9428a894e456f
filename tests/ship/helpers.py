"""Helpers shared by the shipping tests."""
from __future__ import annotations

import time


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def training_events(n: int, path: str = "/logs/train.log", run_id: str = "r1", start: float = 1_767_225_600.0):
    """n training-step events as the parser gives them (flat dotted names, epoch seconds),
    with byte offsets 100 apart; every 7th has a NaN loss."""
    return [{
        "@timestamp": start + i, "event.ingested": start + i + 0.5, "message": f"step {i}",
        "log.level": "info", "log.file.path": path, "log.file.line": i + 1, "log.offset": 100 * i,
        "host.name": "gpu-node-1", "service.name": "trainer", "labels.run_id": run_id,
        "ml.step": i, "ml.loss": float("nan") if i % 7 == 3 else 2.0 / (i + 1),
    } for i in range(n)]


def ship(sink, events, file_id="file-1"):
    for ev in events:
        assert sink.submit(ev, file_id, ev["log.offset"] + 100)
