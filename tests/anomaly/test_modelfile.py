"""The model file: one skops file that round-trips exactly and can run no code when loaded."""
from __future__ import annotations

import json
import sys
import zipfile

import pytest

from .logs import events, write_run

PROBE_MODULE = '''
import os, pathlib
pathlib.Path(os.environ["FW_PROBE_MARKER"]).write_text("imported")

class Probe:
    def __init__(self):
        self.x = 1

    def __setstate__(self, state):
        pathlib.Path(os.environ["FW_PROBE_MARKER"]).write_text("constructed")
'''


def rewrite(path, target, header=None, extra: dict | None = None):
    """Copy a model file, with another header and/or extra payload entries."""
    import skops.io

    with zipfile.ZipFile(path) as src:
        if extra is None:
            members = {name: src.read(name) for name in src.namelist() if name != "faultwarden.json"}
        else:
            payload = skops.io.load(path, trusted=_trusted())
            payload.update(extra)
            with zipfile.ZipFile(__import__("io").BytesIO(skops.io.dumps(payload))) as fresh:
                members = {name: fresh.read(name) for name in fresh.namelist()}
        old_header = json.loads(src.read("faultwarden.json"))
    with zipfile.ZipFile(target, "w") as out:
        for name, data in members.items():
            out.writestr(name, data)
        out.writestr("faultwarden.json", json.dumps(header if header is not None else old_header))
    return target


def _trusted():
    from faultwarden.detectors.anomaly.modelfile import TRUSTED_TYPES

    return TRUSTED_TYPES


@pytest.fixture(scope="module")
def saved(run_model, tmp_path_factory):
    from faultwarden.detectors.anomaly import save

    path = tmp_path_factory.mktemp("model") / "runs.fwm"
    save(run_model, path)
    return path


def test_round_trip_gives_identical_scores(run_model, saved, tmp_path):
    from faultwarden.detectors.anomaly import AnomalyDetector, load

    loaded = load(saved)
    assert loaded.fingerprint == run_model.fingerprint and loaded.threshold == run_model.threshold
    evs = events(write_run(tmp_path / "slow.log", "slow", seed=31, creep_from=150,
                           inject={300: "watchdog: rank 2 stopped responding"}))
    windows = []
    windower = run_model.windower()
    for e in evs:
        windows += windower.add(e)
    windows += windower.flush()
    before, after = run_model.score(windows), loaded.score(windows)
    assert [s.score for s in before] == [s.score for s in after]
    assert [s.forest for s in before] == [s.forest for s in after]
    assert [s.beyond for s in before] == [s.beyond for s in after]
    found_before = [f.message for f in AnomalyDetector(run_model).scan(evs)]
    found_after = [f.message for f in AnomalyDetector(loaded).scan(evs)]
    assert found_before and found_before == found_after


def test_the_file_is_one_zip_with_a_versioned_header(saved):
    with zipfile.ZipFile(saved) as archive:
        header = json.loads(archive.read("faultwarden.json"))
        assert "schema.json" in archive.namelist()
    assert header["format"] == "faultwarden-anomaly-model" and header["version"] == 1
    assert header["name"] == "runs"


def test_another_format_version_is_refused_naming_the_file(saved, tmp_path):
    from faultwarden.detectors.anomaly import ModelFileError, load

    header = {"format": "faultwarden-anomaly-model", "version": 99, "name": "runs"}
    future = rewrite(saved, tmp_path / "future.fwm", header=header)
    with pytest.raises(ModelFileError) as caught:
        load(future)
    assert str(future) in str(caught.value)
    assert "version 99" in str(caught.value) and "version 1" in str(caught.value)


def test_a_foreign_type_is_refused_and_runs_nothing(saved, tmp_path, monkeypatch):
    from faultwarden.detectors.anomaly import ModelFileError, load

    (tmp_path / "fw_probe_mod.py").write_text(PROBE_MODULE)
    marker = tmp_path / "marker"
    monkeypatch.setenv("FW_PROBE_MARKER", str(marker))
    monkeypatch.syspath_prepend(str(tmp_path))
    import fw_probe_mod

    evil = rewrite(saved, tmp_path / "evil.fwm", extra={"probe": fw_probe_mod.Probe()})
    marker.unlink()
    monkeypatch.delitem(sys.modules, "fw_probe_mod")
    with pytest.raises(ModelFileError) as caught:
        load(evil)
    assert str(evil) in str(caught.value) and "fw_probe_mod.Probe" in str(caught.value)
    assert not marker.exists(), "loading imported or built the foreign type"
    assert "fw_probe_mod" not in sys.modules


def test_a_function_in_the_file_is_refused(saved, tmp_path):
    import os

    from faultwarden.detectors.anomaly import ModelFileError, load

    evil = rewrite(saved, tmp_path / "system.fwm", extra={"hook": os.system})
    with pytest.raises(ModelFileError, match=r"refusing to load.*posix\.system"):
        load(evil)


def test_a_tree_with_out_of_range_nodes_is_refused(saved, tmp_path):
    """skops warns that a crafted Tree can make predict read out of bounds: checked on load."""
    import numpy as np
    import skops.io

    from faultwarden.detectors.anomaly import ModelFileError, load

    payload = skops.io.load(saved, trusted=_trusted())
    tree = payload["forest"].estimators_[0].tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    inner = np.flatnonzero(nodes["left_child"] != -1)[0]
    nodes["left_child"][inner] = len(nodes) + 1000
    state["nodes"] = nodes
    tree.__setstate__(state)
    bad = tmp_path / "bad.fwm"
    with zipfile.ZipFile(bad, "w") as out, zipfile.ZipFile(__import__("io").BytesIO(skops.io.dumps(payload))) as z:
        for name in z.namelist():
            out.writestr(name, z.read(name))
        with zipfile.ZipFile(saved) as src:
            out.writestr("faultwarden.json", src.read("faultwarden.json"))
    with pytest.raises(ModelFileError, match="tree 0: a child index is out of range"):
        load(bad)


def test_not_a_model_is_refused_naming_the_file(tmp_path):
    from faultwarden.detectors.anomaly import ModelFileError, load

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path, words in ((text, "not a faultwarden anomaly model"), (tmp_path / "missing.fwm", "no such model file")):
        with pytest.raises(ModelFileError) as caught:
            load(path)
        assert str(path) in str(caught.value) and words in str(caught.value)


class Payload:
    """A classic pickle payload: unpickling it runs a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        import shlex

        return os.system, (f"echo ran > {shlex.quote(self.marker)}",)


def test_a_pickle_in_place_of_an_array_is_refused_and_runs_nothing(saved, tmp_path):
    """numpy writes an array of Python objects as a pickle: one slipped into the model file in
    place of an array is refused, naming the member, and never unpickled."""
    import io
    import pickle

    import numpy as np

    from faultwarden.detectors.anomaly import ModelFileError, load

    marker = tmp_path / "marker"
    poisoned = np.empty(1, dtype=object)
    poisoned[0] = Payload(marker)
    buffer = io.BytesIO()
    np.save(buffer, poisoned, allow_pickle=True)
    pickle.loads(pickle.dumps(Payload(marker)))   # the payload works: it leaves the marker ...
    assert marker.exists()
    marker.unlink()                               # ... and is gone again before the load
    with zipfile.ZipFile(saved) as src:
        members = {name: src.read(name) for name in src.namelist()}
    schema = json.loads(members["schema.json"])
    target = _first_file(schema)
    members[target] = buffer.getvalue()
    evil = tmp_path / "pickled.fwm"
    with zipfile.ZipFile(evil, "w") as out:
        for name, data in members.items():
            out.writestr(name, data)
    with pytest.raises(ModelFileError) as caught:
        load(evil)
    message = str(caught.value)
    assert str(evil) in message and "refusing to load" in message
    assert f"{target} (an array of Python objects, i.e. a pickle)" in message
    assert not marker.exists(), "loading unpickled the payload"


def test_a_pickle_file_is_not_a_model_and_runs_nothing(tmp_path):
    """A pickled object under a model's name (what joblib or pickle.dump would write)."""
    import pickle

    from faultwarden.detectors.anomaly import ModelFileError, load

    marker = tmp_path / "marker"
    evil = tmp_path / "runs.fwm"
    evil.write_bytes(pickle.dumps({"forest": Payload(marker)}))
    with pytest.raises(ModelFileError) as caught:
        load(evil)
    assert str(evil) in str(caught.value) and "not a faultwarden anomaly model" in str(caught.value)
    assert not marker.exists()


def test_a_member_the_model_never_has_is_refused(saved, tmp_path):
    import pickle

    from faultwarden.detectors.anomaly import ModelFileError, load

    marker = tmp_path / "marker"
    evil = tmp_path / "extra.fwm"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(evil, "w") as out:
        for name in src.namelist():
            out.writestr(name, src.read(name))
        out.writestr("payload.pkl", pickle.dumps(Payload(marker)))
    with pytest.raises(ModelFileError, match=r"refusing to load: .*payload\.pkl \(a member a faultwarden model "
                                             r"never has\)"):
        load(evil)
    assert not marker.exists()


def _first_file(node):
    """The first array member the skops schema names."""
    if isinstance(node, dict):
        if isinstance(node.get("file"), str):
            return node["file"]
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = _first_file(child)
            if found:
                return found
    return None
