"""The anomaly model: fit on healthy logs, score windows, explain, save and load.

Three tests, each calibrated on the training windows alone (labels are never looked at):
- the isolation forest's score (sklearn's `-score_samples`, 0..1, higher is stranger);
- the template surprise (features.py: how unlikely the window's set of templates is under the
  training frequencies). A forest splits on one randomly drawn column at a time, so one rare
  template among dozens of columns is seldom split on; the surprise carries every template's
  rarity on one axis;
- the training range: a feature beyond the training min/max by more than `range_margin`
  training standard deviations (for a feature constant in training, such as the count of a
  template never seen or of error lines in logs that had none: any other value; for a job
  metric, by at least `range_floor` of its size too, and only when the whole window moved:
  its fastest step slower than any healthy window's fastest, see features.py). A forest only
  splits between the training minimum and maximum, so a value far outside (every step twice
  as slow as the slowest healthy window's fastest) scores no higher than the most extreme
  healthy window.

The window's **score** is the share of training windows it is more unusual than, by the forest
or by the surprise, whichever is stricter: 1 - min(share of training windows with a forest score
at least as high, share with a surprise at least as high). The **threshold** is the same
quantity at the `quantile` of the training windows, so about 1 - quantile of healthy windows
score above it. A window beyond the training range is anomalous whatever its score.

The explanation ranks features by their deviation from the training mean in training standard
deviations (the fitted StandardScaler's z-score; a feature constant in training has unit scale),
features beyond the training range first.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from faultwarden.detectors.anomaly.features import (
    SURPRISE, UNSEEN, FeatureSpace, idf_weights, impute_values, numeric_fields_of,
)
from faultwarden.detectors.anomaly.spec import ModelSpec, threshold_rule
from faultwarden.detectors.anomaly.templates import TemplateBook, mine
from faultwarden.detectors.anomaly.windows import Window, Windower
from faultwarden.detectors.finding import Event, Finding

MIN_TRAINING_WINDOWS = 8
TOP_FEATURES = 5
CALIBRATION_POINTS = 20_001   # training score distributions are kept at most this finely
ADVICE = ("Compare this window with healthy runs: the explanation lists the features furthest from "
          "what the model saw in training. If this behaviour is healthy, refit the model with these "
          "logs among the training logs (`faultwarden anomaly fit`).")


class FitError(ValueError):
    """The training logs cannot give a model (too few windows, ...)."""


@dataclass
class Scored:
    window: Window
    score: float          # share of training windows this one is more unusual than (0..1)
    forest: float         # the isolation forest's score, 0..1
    surprise: float       # template surprise, nats
    anomalous: bool
    beyond: list[int]     # columns beyond the training range (by more than the margin)
    values: Any           # the row, as the forest saw it before scaling
    z: Any                # the row in training standard deviations


def tail_share(sorted_training, values):
    """Per value: the share of training windows whose score is at least as high."""
    import numpy as np

    n = len(sorted_training)
    return (n - np.searchsorted(sorted_training, values, side="left")) / n


def _calibration(values):
    """Sorted training scores, thinned to at most CALIBRATION_POINTS quantiles."""
    import numpy as np

    values = np.sort(np.asarray(values, dtype=float))
    if len(values) > CALIBRATION_POINTS:
        values = np.quantile(values, np.linspace(0.0, 1.0, CALIBRATION_POINTS))
    return values


class AnomalyModel:
    """Everything scoring needs; built by `fit` or `load`, never changed by scoring."""

    def __init__(self, *, spec: ModelSpec, book: TemplateBook, numeric_fields: Sequence[str],
                 presence: Sequence[float], training_windows: int, weights, impute, train_min, train_max,
                 scaler, forest, forest_training, surprise_training, threshold: float,
                 training: dict[str, Any]):
        import numpy as np

        self.spec = spec.resolved()
        self.name = self.spec.name
        self.book = book
        self.space = FeatureSpace(self.spec, [t.id for t in book.templates], numeric_fields,
                                  presence, training_windows)
        self.weights, self.impute = weights, impute
        self.train_min, self.train_max = train_min, train_max
        self.scaler, self.forest = scaler, forest
        self.forest_training, self.surprise_training = forest_training, surprise_training
        self.threshold = float(threshold)
        self.training = training
        self.rule = f"anomaly:{self.name}"
        self._templates = {t.id: t.text for t in book.templates}
        self._upper = np.asarray(self.space.range_upper, dtype=bool)
        self._lower = np.asarray(self.space.range_lower, dtype=bool)
        self._metric = np.asarray(self.space.metric_columns, dtype=bool)

    @property
    def fingerprint(self) -> str:
        """Names this exact model: detector state saved under another model is not restored."""
        raw = json.dumps([self.spec.to_dict(), self.book.to_data(), self.space.names, self.space.presence,
                          self.threshold], sort_keys=True, default=str)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def windower(self) -> Windower:
        return Windower(self.spec, self.book.classify)

    # -- scoring -------------------------------------------------------------------------------
    def rows(self, windows: Sequence[Window]):
        """The rows the forest sees (weighted, imputed), before scaling."""
        import numpy as np

        x = self.space.matrix(windows)
        x = np.where(np.isnan(x), self.impute, x)
        return x * self.weights

    def score(self, windows: Sequence[Window]) -> list[Scored]:
        import numpy as np

        if not windows:
            return []
        x = self.rows(windows)
        z = self.scaler.transform(x)
        forest = -self.forest.score_samples(z)
        surprise = x[:, self.space.index[SURPRISE]]
        score = self.combine(forest, surprise)
        beyond = self._beyond_range(x)
        out = []
        for i, window in enumerate(windows):
            cols = [int(c) for c in np.flatnonzero(beyond[i])]
            anomalous = bool(score[i] > self.threshold) or bool(cols)
            out.append(Scored(window, float(score[i]), float(forest[i]), float(surprise[i]), anomalous,
                              cols, x[i], z[i]))
        return out

    def combine(self, forest, surprise):
        """1 - the smaller of the two training tail shares: how many healthy windows this beats."""
        import numpy as np

        return 1.0 - np.minimum(tail_share(self.forest_training, forest),
                                tail_share(self.surprise_training, surprise))

    def _beyond_range(self, x):
        """Cells beyond the training range by more than `range_margin` training std; for a column
        constant in training (no std to measure by), any other value. A job metric's margin is
        at least `range_floor` of its size (a step time 2 % above the healthy range is noise,
        however steady the healthy runs were), and only its window `min` is tested upwards and
        its `max` downwards (features.py: the whole window moved, not one step)."""
        import numpy as np

        if math.isinf(self.spec.range_margin):
            return np.zeros(x.shape, dtype=bool)
        constant = self.scaler.var_ == 0
        size = np.maximum(np.abs(self.train_max), np.abs(self.train_min))
        margin = np.where(constant, 1e-6 * np.maximum(1.0, size), self.spec.range_margin * self.scaler.scale_)
        margin = np.where(self._metric, np.maximum(margin, self.spec.range_floor * size), margin)
        return (((x > self.train_max + margin) & self._upper)
                | ((x < self.train_min - margin) & self._lower))

    def findings(self, windows: Sequence[Window]) -> list[Finding]:
        return [self.finding(s) for s in self.score(windows) if s.anomalous]

    def finding(self, scored: Scored) -> Finding:
        w = scored.window
        features = self.explain(scored)
        unseen = self.space.index[UNSEEN]
        if unseen in scored.beyond and w.unseen_examples:
            why = (f"{w.unseen} line(s) of templates never seen in training, the first: "
                   f"«{w.unseen_examples[0]}»")
        elif scored.beyond:
            top = next(f for f in features if f["beyond_training_range"])
            low, high = top["training_range"]
            why = f"{top['feature']} = {_num(top['value'])}, beyond the training range {_num(low)}..{_num(high)}"
        else:
            top = features[0] if features else None
            why = f"most unusual: {top['feature']} at {top['z']:+.1f} training std" if top else ""
        verdict = "above" if scored.score > self.threshold else "not above"
        message = (f"unusual window of {w.events} events: score {scored.score:.4f} {verdict} threshold "
                   f"{self.threshold:.4f} (forest {scored.forest:.3f}, template surprise "
                   f"{scored.surprise:.1f} nats)" + (f"; {why}" if why else ""))
        evidence = list(dict.fromkeys(
            [m for m in [w.first.get("message")] if isinstance(m, str)] + w.unseen_examples + w.error_examples))
        explanation = {
            "model": self.name,
            "method": "score = share of training windows less unusual (by forest score or template "
                      "surprise); features by z-score against training, beyond-range first",
            "score": scored.score, "threshold": self.threshold, "threshold_rule": threshold_rule(self.spec),
            "forest_score": scored.forest, "template_surprise_nats": scored.surprise,
            "window": {"events": w.events, "start": w.start, "end": w.end, "closed_by": w.closed_by},
            "features": features,
            "unseen_templates": w.unseen_examples,
        }
        return Finding(rule=self.rule, fault="anomaly", severity="warning", group=dict(w.group),
                       time=w.end if w.end is not None else (w.start or 0.0), source=w.source,
                       message=message, advice=ADVICE, evidence=tuple(evidence), explanation=explanation)

    def explain(self, scored: Scored, top: int = TOP_FEATURES) -> list[dict[str, Any]]:
        beyond = set(scored.beyond)
        surprise = self.space.index[SURPRISE]
        # Beyond the training range first; among those, the surprise (derived from the template
        # counts) after the concrete features that caused it.
        order = sorted(range(len(self.space.names)),
                       key=lambda c: (c not in beyond, c == surprise, -abs(float(scored.z[c])), c))
        out = []
        for c in order[:top]:
            z = float(scored.z[c])
            if c not in beyond and abs(z) < 1e-9:
                break
            out.append({
                "feature": self.space.label(self.space.names[c], self._templates),
                "value": float(scored.values[c]),
                "training_mean": float(self.scaler.mean_[c]),
                "training_std": float(self.scaler.scale_[c]),
                "z": z,
                "training_range": [float(self.train_min[c]), float(self.train_max[c])],
                "beyond_training_range": c in beyond,
            })
        return out


def _num(value: float) -> str:
    return f"{value:.4g}"


Source = Callable[[], Iterable[Event]]
"""Training events, as a callable that gives a fresh pass each time (fit reads them twice)."""


def fit(source: Source, spec: ModelSpec) -> AnomalyModel:
    """Mine templates over the training events, cut them into windows exactly as scoring will,
    and fit the scaler, the forest and the threshold on those windows alone."""
    import numpy as np
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    spec = spec.resolved()
    book = mine(spec, (m if isinstance(m, str) else "" for m in (e.get("message") for e in source())))
    windower = Windower(spec, book.classify)
    windows: list[Window] = []
    events = 0
    for event in source():
        events += 1
        windows.extend(windower.add(event))
    windows.extend(windower.flush())
    if len(windows) < MIN_TRAINING_WINDOWS:
        raise FitError(
            f"the training logs gave {len(windows)} window(s) of at least {spec.min_events} events "
            f"from {events} events; at least {MIN_TRAINING_WINDOWS} are needed: give more healthy logs"
            + (" or a smaller --window-events" if spec.window_events else ""))
    numeric = numeric_fields_of(windows, spec)
    space = FeatureSpace(spec, [t.id for t in book.templates], numeric)
    x = space.matrix(windows)
    space.learn_presence(x)
    impute = impute_values(x)
    x = np.where(np.isnan(x), impute, x)
    weights = idf_weights(x, space) if spec.tfidf else np.ones(x.shape[1])
    x = x * weights
    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    max_samples = spec.max_samples
    if isinstance(max_samples, int):
        max_samples = min(max_samples, len(windows))   # sklearn would warn and do the same
    forest = IsolationForest(n_estimators=spec.trees, max_samples=max_samples, random_state=spec.seed)
    forest.fit(z)
    forest_scores = -forest.score_samples(z)
    surprises = x[:, space.index[SURPRISE]]
    forest_training, surprise_training = _calibration(forest_scores), _calibration(surprises)
    model = AnomalyModel(
        spec=spec, book=book, numeric_fields=numeric, presence=space.presence,
        training_windows=space.training_windows, weights=weights, impute=impute,
        train_min=x.min(axis=0), train_max=x.max(axis=0), scaler=scaler, forest=forest,
        forest_training=forest_training, surprise_training=surprise_training, threshold=0.0, training={})
    scores = model.combine(forest_scores, surprises)
    model.threshold = float(np.quantile(scores, spec.quantile))
    model.training = {
        "events": events, "windows": len(windows), "too_short": windower.too_short,
        "unkeyed": windower.unkeyed, "templates": len(book.templates), "features": len(space.names),
        "above_threshold": int((scores > model.threshold).sum()),
        "beyond_range": int(model._beyond_range(x).any(axis=1).sum()),
    }
    return model
