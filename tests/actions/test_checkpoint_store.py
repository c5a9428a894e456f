"""Checkpoint discovery and health verdicts, without torch: real files on disk."""
from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

import pytest

from faultwarden.daemon.actions import integrity
from faultwarden.daemon.actions.checkpoints import CheckpointStore, step_from_name


def torch_zip(path: Path, payload: bytes = b"\x01" * 512) -> Path:
    """A file shaped like torch.save's zip archive (stored members, so a flipped byte is a CRC error)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/data/0", payload)
    return path


def safetensors(path: Path, n: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]},
                         "b": {"dtype": "F16", "shape": [2], "data_offsets": [4 * n, 4 * n + 4]},
                         "__metadata__": {"format": "pt"}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * (4 * n + 4))
    return path


def hf_folder(root: Path, step: int, losses: dict[int, float] | None = None) -> Path:
    folder = root / f"checkpoint-{step}"
    safetensors(folder / "model.safetensors")
    torch_zip(folder / "optimizer.pt")
    history = [{"step": s, "loss": l, "learning_rate": 1e-4} for s, l in (losses or {step: 0.5}).items()]
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))
    return folder


def sidecar(path: Path, digest: str | None = None) -> None:
    digest = digest or hashlib.sha256(path.read_bytes()).hexdigest()
    (path.parent / (path.name + ".sha256")).write_text(f"{digest}  {path.name}\n")


def verdicts(store: CheckpointStore) -> dict[int, str]:
    return {c.step: store.verdict(c).summary() for c in store.find()}


@pytest.mark.parametrize("name, step", [
    ("checkpoint-1200", 1200), ("step-000120.pt", 120), ("model_step120.safetensors", 120),
    ("epoch=3-step=1200.ckpt", 1200), ("ckpt_v2_500.pth", 500), ("last.ckpt", None),
    ("model-00001-of-00004.safetensors", None), ("training_args.bin", None),
])
def test_step_from_name(name, step):
    assert step_from_name(name) == step


def test_finds_hf_folders_and_step_files_but_not_quarantine_or_stepless(tmp_path):
    hf_folder(tmp_path, 20)
    torch_zip(tmp_path / "step-30.pt")
    torch_zip(tmp_path / "last.pt")
    torch_zip(tmp_path / ".faultwarden-quarantine" / "b1" / "step-40.pt")
    (tmp_path / "notes-50.txt").write_text("not a checkpoint")
    found = CheckpointStore.of([tmp_path]).find()
    assert [(c.step, c.kind, c.path.name) for c in found] == [(20, "folder", "checkpoint-20"), (30, "file", "step-30.pt")]


def test_whole_files_are_healthy(tmp_path):
    hf_folder(tmp_path, 10)
    torch_zip(tmp_path / "step-20.pt")
    sidecar(tmp_path / "step-20.pt")
    store = CheckpointStore.of([tmp_path])
    assert all(store.verdict(c).healthy for c in store.find())


def test_corrupt_zip_member_fails_its_crc(tmp_path):
    path = torch_zip(tmp_path / "step-20.pt")
    data = bytearray(path.read_bytes())
    at = data.index(b"\x01" * 512) + 100
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    (verdict,) = verdicts(CheckpointStore.of([tmp_path])).values()
    assert "member archive/data/0 fails its CRC check" in verdict


def test_truncated_zip_and_garbage_are_unhealthy(tmp_path):
    path = torch_zip(tmp_path / "step-20.pt")
    path.write_bytes(path.read_bytes()[:300])
    (tmp_path / "step-30.pt").write_bytes(b"<html>proxy error</html>")
    v = verdicts(CheckpointStore.of([tmp_path]))
    assert "damaged zip archive" in v[20]
    assert "neither a torch.save zip archive nor a legacy pickle" in v[30]


def test_truncated_safetensors_is_unhealthy(tmp_path):
    good = safetensors(tmp_path / "model-step10.safetensors")
    bad = safetensors(tmp_path / "model-step20.safetensors")
    bad.write_bytes(bad.read_bytes()[:-100])
    short_header = tmp_path / "model-step30.safetensors"
    short_header.write_bytes(good.read_bytes()[:20])
    v = verdicts(CheckpointStore.of([tmp_path]))
    assert v[10].startswith("healthy")
    assert "truncated" in v[20] and "tensor data ends at byte 260" in v[20]
    assert "does not fit" in v[30]


def test_safetensors_with_inconsistent_offsets_is_unhealthy(tmp_path):
    path = tmp_path / "model-step10.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 16]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 16)
    (v,) = verdicts(CheckpointStore.of([tmp_path])).values()
    assert "spans 16 bytes, its F32[8] needs 32" in v


def test_sha256_sidecar_mismatch_is_unhealthy(tmp_path):
    path = torch_zip(tmp_path / "step-20.pt")
    sidecar(path, "0" * 64)
    (v,) = verdicts(CheckpointStore.of([tmp_path])).values()
    assert "does not match the recorded" in v


def test_nan_loss_in_trainer_state_makes_a_folder_unhealthy(tmp_path):
    hf_folder(tmp_path, 20, {10: 0.9, 20: 0.7})
    hf_folder(tmp_path, 40, {30: float("nan"), 40: 0.6})  # the last loss at 40 is finite again
    hf_folder(tmp_path, 60, {50: 0.6, 60: float("inf")})
    v = verdicts(CheckpointStore.of([tmp_path]))
    assert v[20] == "healthy; loss 0.7 at step 20"
    assert v[40].startswith("healthy")
    assert "loss inf at step 60" in v[60]


def test_losses_the_pipeline_saw_decide_too(tmp_path):
    torch_zip(tmp_path / "step-20.pt")
    torch_zip(tmp_path / "step-30.pt")
    store = CheckpointStore.of([tmp_path])
    for event in ({"ml.step": 20, "ml.loss": 0.5}, {"ml.step": 25, "ml.loss": float("nan")},
                  {"ml.step": 31, "ml.loss": 0.4}):
        store.learn(event)
    v = verdicts(store)
    assert v[20] == "healthy; loss 0.5 at step 20"
    assert v[30] == "loss nan at step 25 (at or before step 30)"


def test_folder_digest_from_the_checkpoint_saved_event(tmp_path):
    from faultwarden.model.checkpoint import digest

    folder = hf_folder(tmp_path, 20)
    store = CheckpointStore.of([])
    store.learn({"ml.checkpoint.path": str(folder), "ml.checkpoint.step": 20,
                 "ml.checkpoint.sha256": digest(folder).sha256})
    assert [c.step for c in store.find()] == [20]  # its folder joined the search
    assert store.verdict(store.find()[0]).healthy
    # saved again with other bytes (a new file renamed into place, as careful writers do)
    torch_zip(tmp_path / "other.pt", payload=b"\x02" * 512).replace(folder / "optimizer.pt")
    assert "does not match the" in store.verdict(store.find()[0]).summary()


def test_folder_without_weights_is_unhealthy(tmp_path):
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text("{}")
    assert verdicts(CheckpointStore.of([tmp_path]))[10] == "checkpoint-10: no weight files"


def test_choose_newest_healthy_strictly_before_the_fault(tmp_path):
    for step in (10, 20, 30, 40):
        hf_folder(tmp_path, step, {step: 0.5})
    bad = tmp_path / "checkpoint-30" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:-8])
    store = CheckpointStore.of([tmp_path])
    chosen, passed = store.choose(before_step=40)
    assert chosen.step == 20
    assert [c.step for c, _ in passed] == [30]
    assert store.choose(before_step=10)[0] is None
    assert store.choose()[0].step == 40


def test_verdicts_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    path = torch_zip(tmp_path / "step-20.pt")
    store = CheckpointStore.of([tmp_path])
    calls = []
    real = integrity.check_file
    monkeypatch.setattr(integrity, "check_file", lambda *a: calls.append(a) or real(*a))
    ckpt = store.find()[0]
    for _ in range(3):
        assert store.verdict(ckpt).healthy
    assert len(calls) == 1
    path.write_bytes(b"garbage")  # a new size (and time): judged again
    assert not store.verdict(store.find()[0]).healthy
    assert len(calls) == 2
