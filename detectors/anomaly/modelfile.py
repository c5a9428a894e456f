"""The model file: ONE skops file that cannot run code when it is loaded.

Layout: the skops zip (`schema.json` + arrays) holding a dict of plain data, numpy arrays, a
StandardScaler and an IsolationForest, plus one more zip member, `faultwarden.json`, with the
format name and version. Loading goes:

1. the header: another format or version is refused, naming the file, before anything else;
2. every type named in `schema.json` must be in `TRUSTED_TYPES`; anything else is refused with
   its name, before skops builds a single object (so no foreign module is even imported); and
   the archive holds only the header, the schema and the arrays it names, none of them an
   array of Python objects (which numpy stores as a pickle): read from the headers alone;
3. `skops.io.load(..., trusted=TRUSTED_TYPES)`: skops audits the same list again;
4. the content is checked: the right classes, array shapes that agree, and tree node indices in
   range (skops warns that a crafted `sklearn.tree._tree.Tree` can make predict read out of
   bounds; these checks close that).
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from faultwarden.detectors.anomaly.model import AnomalyModel
from faultwarden.detectors.anomaly.spec import ModelSpec, SpecError
from faultwarden.detectors.anomaly.templates import TemplateBook

FORMAT = "faultwarden-anomaly-model"
VERSION = 1
HEADER = "faultwarden.json"

# Every type a model file written by this version holds, and nothing more.
TRUSTED_TYPES = [
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int",
    "builtins.float", "builtins.bool", "builtins.NoneType",
    "numpy.ndarray", "numpy.float64", "numpy.int64",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
]


class ModelFileError(Exception):
    """A model file that cannot be read or written; `str()` names the file."""

    def __init__(self, path: str | os.PathLike, message: str):
        self.path, self.message = str(path), message
        super().__init__(f"{path}: {message}")


def save(model: AnomalyModel, path: str | os.PathLike) -> None:
    """Write the model atomically (a reader never sees half a file)."""
    import skops.io

    payload = {
        "spec": model.spec.to_dict(),
        "templates": model.book.to_data(),
        "numeric_fields": list(model.space.numeric_fields),
        "template_presence": [float(p) for p in model.space.presence],
        "training_windows": int(model.space.training_windows),
        "forest_training": model.forest_training, "surprise_training": model.surprise_training,
        "feature_names": list(model.space.names),
        "weights": model.weights, "impute": model.impute,
        "train_min": model.train_min, "train_max": model.train_max,
        "scaler": model.scaler, "forest": model.forest,
        "threshold": float(model.threshold),
        "training": model.training,
    }
    header = {"format": FORMAT, "version": VERSION, "name": model.name, "fingerprint": model.fingerprint}
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(skops.io.dumps(payload, compression=zipfile.ZIP_DEFLATED))
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(HEADER, json.dumps(header, indent=2))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The format header, checked; raises ModelFileError naming the file."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if HEADER not in names:
                raise ModelFileError(path, "not a faultwarden anomaly model (no faultwarden.json inside): "
                                           "make one with `faultwarden anomaly fit`")
            header = json.loads(archive.read(HEADER))
    except FileNotFoundError:
        raise ModelFileError(path, "no such model file") from None
    except (zipfile.BadZipFile, IsADirectoryError, PermissionError) as exc:
        raise ModelFileError(path, f"not a faultwarden anomaly model ({exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(path, f"unreadable faultwarden.json header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(path, f"not a faultwarden anomaly model (format {header.get('format')!r})"
                             if isinstance(header, dict) else "not a faultwarden anomaly model")
    if header.get("version") != VERSION:
        raise ModelFileError(
            path, f"model format version {header.get('version')!r}, but this faultwarden reads version "
                  f"{VERSION}: refit it with `faultwarden anomaly fit`")
    return header


def foreign_types(path: str | os.PathLike) -> list[str]:
    """Types named in the skops schema that a model file never holds (read as JSON, nothing built)."""
    return _audit(path)[0]


def _audit(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(foreign types, problems with the archive's members), read as JSON and array headers only.

    A faultwarden model file holds its header, `schema.json` and the `.npy` arrays the schema
    names, nothing else; and no array of Python objects: numpy writes those as a pickle (skops
    itself refuses to read them, `allow_pickle=False`; this says why, naming the member)."""
    import numpy as np

    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
        found: set[str] = set()
        files: set[str] = set()
        stack = [schema]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if "__module__" in node or "__class__" in node:
                    found.add(f"{node.get('__module__')}.{node.get('__class__')}")
                if isinstance(node.get("file"), str):
                    files.add(node["file"])
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
        problems = []
        names = set(archive.namelist())
        for extra in sorted(names - files - {"schema.json", HEADER}):
            problems.append(f"{extra} (a member a faultwarden model never has)")
        for name in sorted(files & names):
            with archive.open(name) as member:
                try:
                    version = np.lib.format.read_magic(member)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    dtype = read(member)[2]
                except ValueError as exc:
                    problems.append(f"{name} (not a numpy array: {exc})")
                    continue
            if dtype.hasobject:
                problems.append(f"{name} (an array of Python objects, i.e. a pickle)")
    return sorted(found - set(TRUSTED_TYPES)), problems


def load(path: str | os.PathLike) -> AnomalyModel:
    read_header(path)
    try:
        foreign, problems = _audit(path)
    except (KeyError, json.JSONDecodeError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise ModelFileError(path, f"not a skops model file: {exc}") from None
    if foreign:
        raise ModelFileError(path, "refusing to load: it holds types a faultwarden model never holds, "
                                   f"and loading them could run code: {', '.join(foreign)}")
    if problems:
        raise ModelFileError(path, "refusing to load: it was altered after `faultwarden anomaly fit` wrote it: "
                                   + "; ".join(problems))
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        payload = skops.io.load(path, trusted=TRUSTED_TYPES)
    except UntrustedTypesFoundException as exc:
        raise ModelFileError(path, f"refusing to load: {exc}") from None
    except Exception as exc:  # a damaged archive: any error of skops' own is "cannot read"
        raise ModelFileError(path, f"cannot read the model: {type(exc).__name__}: {exc}") from None
    return _build(path, payload)


def _build(path, payload: Any) -> AnomalyModel:
    import numpy as np
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    def bad(message: str) -> ModelFileError:
        return ModelFileError(path, f"damaged model: {message}")

    if not isinstance(payload, dict):
        raise bad("the top level is not a dict")
    try:
        spec = ModelSpec.from_dict(payload["spec"])
        book = TemplateBook.from_data(spec, payload["templates"])
        numeric = [str(n) for n in payload["numeric_fields"]]
        presence = [float(p) for p in payload["template_presence"]]
        training_windows = int(payload["training_windows"])
        calibration = {k: payload[k] for k in ("forest_training", "surprise_training")}
        names = list(payload["feature_names"])
        scaler, forest = payload["scaler"], payload["forest"]
        arrays = {k: payload[k] for k in ("weights", "impute", "train_min", "train_max")}
        threshold = float(payload["threshold"])
        training = dict(payload.get("training", {}))
    except SpecError as exc:
        raise bad(f"spec: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"{type(exc).__name__}: {exc}") from None
    if not isinstance(scaler, StandardScaler) or not isinstance(forest, IsolationForest):
        raise bad("the scaler or the forest is of the wrong class")
    n = len(names)
    for key, array in arrays.items():
        if not isinstance(array, np.ndarray) or array.shape != (n,):
            raise bad(f"{key} does not have one value per feature ({n})")
    if len(presence) != len(book.templates) or not all(0.0 < p < 1.0 for p in presence):
        raise bad("template_presence does not give one share in (0, 1) per template")
    for key, array in calibration.items():
        if not isinstance(array, np.ndarray) or array.ndim != 1 or not len(array) \
                or np.any(np.diff(array) < 0):
            raise bad(f"{key} is not a sorted list of training scores")
    if getattr(scaler, "n_features_in_", None) != n or getattr(forest, "n_features_in_", None) != n:
        raise bad(f"the scaler or the forest was not fitted on {n} features")
    for i, features in enumerate(forest.estimators_features_):
        if len(features) and (np.min(features) < 0 or np.max(features) >= n):
            raise bad(f"tree {i} uses a feature outside 0..{n - 1}")
    for i, estimator in enumerate(forest.estimators_):
        _check_tree(estimator.tree_, len(forest.estimators_features_[i]), lambda m, i=i: bad(f"tree {i}: {m}"))
    model = AnomalyModel(spec=spec, book=book, numeric_fields=numeric, presence=presence,
                         training_windows=training_windows, weights=arrays["weights"],
                         impute=arrays["impute"], train_min=arrays["train_min"], train_max=arrays["train_max"],
                         scaler=scaler, forest=forest, forest_training=calibration["forest_training"],
                         surprise_training=calibration["surprise_training"], threshold=threshold,
                         training=training)
    if model.space.names != names:
        raise bad("the feature names do not follow from the spec and templates")
    return model


def _check_tree(tree, n_features: int, bad) -> None:
    """Node indices that sklearn follows without bounds checks must be in range, and a child must
    come after its parent (sklearn builds depth-first), so a walk always ends."""
    import numpy as np

    count = tree.node_count
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    if not (len(left) == len(right) == len(feature) == count) or count < 1:
        raise bad("node arrays disagree")
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        raise bad("a node has one child")
    idx = np.arange(count)
    inner = ~leaf
    if np.any((left[inner] <= idx[inner]) | (right[inner] <= idx[inner])
              | (left[inner] >= count) | (right[inner] >= count)):
        raise bad("a child index is out of range")
    if np.any((feature[inner] < 0) | (feature[inner] >= n_features)):
        raise bad("a split uses a feature out of range")
