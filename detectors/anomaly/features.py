"""A closed window → one row of numbers, with a name for every column.

Columns, in order:
- `events` (not for count windows, where it is the window size itself),
- `errors` and `level.<debug|info|warning|error|critical>` counts,
- `template.<id>` counts of every training template, and `template.unseen`,
- `ml.non_finite`: NaN/inf values among the job's numbers,
- `template.surprise`: how unlikely the window's SET of templates is, in nats, if each template
  turned up in a window independently with its training frequency (present: -log p, absent:
  -log(1-p), any unseen: -log 1/(N+2); frequencies Laplace-smoothed over N training windows).
  It puts the rarity of every template on one axis: a forest picks split features at random, so
  one rare template among dozens of columns is seldom split on; this column always carries it.
- `<ml field>.<mean|std|min|max|last|slope>` for every ml.* field summarised.

The training-range test (model.py) reads `range_sides`: count columns are tested both ways;
of a job metric's columns only `min` upwards and `max` downwards, i.e. when the WHOLE window
moved past what healthy windows showed (every step slower, every batch's throughput lower).
One slow step (a preempted process, a GC pause) moves max, std, mean and last, not min: it
is the forest's to weigh and the rules' `spike` to catch, not a sure anomaly.

Count windows give their counts per `window_events` events, so a short window at the end of a
run compares with full ones. A numeric field a window lacks takes its training mean: absent is
not unusual by itself (`events` and the template counts already say what was logged).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from faultwarden.detectors.anomaly.spec import ModelSpec
from faultwarden.detectors.anomaly.windows import LEVELS, Window

STATS = ("mean", "std", "min", "max", "last", "slope")
UNSEEN = "template.unseen"
SURPRISE = "template.surprise"


class FeatureSpace:
    """Which columns a model has; turns windows into a matrix."""

    def __init__(self, spec: ModelSpec, template_ids: Sequence[int], numeric_fields: Sequence[str],
                 presence: Sequence[float] | None = None, training_windows: int = 0):
        """`presence[i]`: the share of training windows with template_ids[i] (None while fitting)."""
        self.spec = spec.resolved()
        self.template_ids = list(template_ids)
        self.numeric_fields = list(numeric_fields)
        counts = ["errors", *(f"level.{lv}" for lv in LEVELS),
                  *(f"template.{i}" for i in self.template_ids), UNSEEN, "ml.non_finite"]
        self.names: list[str] = ([] if self.spec.count_windows else ["events"]) + counts + [SURPRISE] + [
            f"{name}.{stat}" for name in self.numeric_fields for stat in STATS]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.count_columns = [self.index[name] for name in counts]
        self.template_columns = [self.index[f"template.{i}"] for i in self.template_ids]
        self.presence = None if presence is None else [float(p) for p in presence]
        self.training_windows = int(training_windows)
        # Per column: may the range test flag it above the training range, below it; and is it a
        # job metric (whose margin has a floor relative to its size, see ModelSpec.range_floor).
        self.range_upper = [not _is_metric(n) or n.endswith(".min") for n in self.names]
        self.range_lower = [not _is_metric(n) or n.endswith(".max") for n in self.names]
        self.metric_columns = [_is_metric(n) for n in self.names]

    def learn_presence(self, x) -> None:
        """Template frequencies over the training rows, then their surprise column."""
        n = x.shape[0]
        present = (x[:, self.template_columns] > 0).sum(axis=0)
        self.presence = [float(p) for p in (present + 1) / (n + 2)]
        self.training_windows = n
        x[:, self.index[SURPRISE]] = self.surprise(x)

    def surprise(self, x):
        import numpy as np

        p = np.asarray(self.presence, dtype=float).reshape(1, -1)
        present = x[:, self.template_columns] > 0
        nats = np.where(present, -np.log(p), -np.log1p(-p)).sum(axis=1)
        return nats + (x[:, self.index[UNSEEN]] > 0) * math.log(self.training_windows + 2)

    def matrix(self, windows: Sequence[Window]):
        """Rows for the windows; a numeric field a window lacks is NaN here (see `impute`)."""
        import numpy as np

        x = np.full((len(windows), len(self.names)), np.nan)
        template_col = {tid: self.index[f"template.{tid}"] for tid in self.template_ids}
        for row, w in enumerate(windows):
            values = x[row]
            if "events" in self.index:
                values[self.index["events"]] = w.events
            values[self.count_columns] = 0.0
            values[self.index["errors"]] = w.errors
            for level, n in w.levels.items():
                values[self.index[f"level.{level}"]] = n
            for tid, n in w.templates.items():
                col = template_col.get(tid)
                if col is not None:
                    values[col] = n
            values[self.index[UNSEEN]] = w.unseen
            values[self.index["ml.non_finite"]] = w.non_finite
            if self.spec.count_windows and w.events:
                values[self.count_columns] *= self.spec.window_events / w.events
            for name in self.numeric_fields:
                stats = w.numbers.get(name)
                if stats is not None and stats.n:
                    for stat, value in stats.summary().items():
                        values[self.index[f"{name}.{stat}"]] = value
        if self.presence is not None:
            x[:, self.index[SURPRISE]] = self.surprise(x)
        return x

    def label(self, name: str, templates: dict[int, str]) -> str:
        """A column name a person can read: template columns carry their template text."""
        if name.startswith("template.") and name not in (UNSEEN, SURPRISE):
            tid = int(name.split(".", 1)[1])
            return f"{name} «{templates.get(tid, '?')}»"
        return name


def _is_metric(name: str) -> bool:
    """A column summarising one of the job's numbers (`ml.loss.mean`), not a count."""
    return name.startswith("ml.") and name != "ml.non_finite"


def numeric_fields_of(windows: Sequence[Window], spec: ModelSpec) -> list[str]:
    """The ml.* fields to summarise: the spec's list, else every one seen in a training window."""
    if spec.numeric_fields is not None:
        return list(spec.numeric_fields)
    seen: set[str] = set()
    for w in windows:
        seen.update(w.numbers)
    return sorted(seen)


def idf_weights(x, space: FeatureSpace):
    """loglizer's tf-idf weight per column: log(N / df) for template columns, 1 elsewhere.
    `template.unseen` keeps weight 1: its training df is 0, and any weight would be arbitrary."""
    import numpy as np

    weights = np.ones(x.shape[1])
    n = max(1, x.shape[0])
    for tid in space.template_ids:
        col = space.index[f"template.{tid}"]
        df = float(np.count_nonzero(x[:, col] > 0))
        weights[col] = math.log(n / (df + 1e-8)) if df else 1.0
    return weights


def impute_values(x) -> Any:
    """Per column: the training mean over the windows that had the value (0 if none had it)."""
    import numpy as np

    present = ~np.isnan(x)
    sums = np.where(present, x, 0.0).sum(axis=0)
    counts = present.sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
