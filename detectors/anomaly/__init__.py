"""The isolation-forest detector: feature windows over events, scored against healthy logs.

- `spec`: what a model was fitted with (windows, features, threshold rule), as plain data.
- `windows`: events → windows per series or session, closed by count, time, idle or end.
- `templates`: Drain3 template mining at fit time, frozen matching at score time.
- `features`: a closed window → one row of numbers, with names.
- `model`: fit, score, explain; the model file (skops, trusted types only).
- `detector`: `AnomalyDetector`, the `Detector` the pipeline feeds.

Importing this package is cheap: sklearn, skops and drain3 are imported inside the functions
that need them, so `faultwarden --help` never pays for them.
"""
from faultwarden.detectors.anomaly.detector import AnomalyDetector
from faultwarden.detectors.anomaly.model import AnomalyModel, FitError, fit
from faultwarden.detectors.anomaly.modelfile import ModelFileError, load, save
from faultwarden.detectors.anomaly.spec import ModelSpec, SpecError

__all__ = [
    "AnomalyDetector", "AnomalyModel", "FitError", "ModelFileError", "ModelSpec", "SpecError", "fit", "load", "save",
]
