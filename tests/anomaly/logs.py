"""Synthetic logs of ML training runs for the anomaly tests: JSON lines, the way
`faultwarden.model` writes them, read back through the daemon's own parser (`read_file`)."""
from __future__ import annotations

import json
import random
from pathlib import Path

from faultwarden.daemon.parse import read_file

START = 1_714_564_800.0   # 2024-05-01T12:00:00Z
STEPS = 400
CHECKPOINT_EVERY = 40


def write_run(path: Path, run_id: str, seed: int, *, steps: int = STEPS, creep_from: int | None = None,
              inject: dict[int, str] | None = None) -> Path:
    """One run's log. `creep_from`: the step time grows by 1 % a step from there on (a slow
    leak, a throttled GPU). `inject`: step → an extra error line logged at that step."""
    rng = random.Random(seed)
    t = START + seed * 100_000
    lines = []
    for step in range(1, steps + 1):
        step_time = 0.5 + rng.gauss(0, 0.01)
        if creep_from is not None and step >= creep_from:
            step_time *= 1.01 ** (step - creep_from)
        t += step_time
        lines.append({"@timestamp": t, "log.level": "info", "message": f"step {step} done",
                      "labels.run_id": run_id, "ml.step": step, "ml.loss": 1.0 + rng.gauss(0, 0.02),
                      "ml.step_time_s": round(step_time, 5)})
        if step % CHECKPOINT_EVERY == 0:
            lines.append({"@timestamp": t, "log.level": "info", "labels.run_id": run_id,
                          "message": f"saved checkpoint to /ckpt/{run_id}/step-{step}"})
        if inject and step in inject:
            lines.append({"@timestamp": t, "log.level": "error", "labels.run_id": run_id,
                          "message": inject[step]})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def events(*paths: Path) -> list[dict]:
    return [e for p in paths for e in read_file(p)]
