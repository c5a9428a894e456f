"""The training job `faultwarden demo` supervises: a small MLP on synthetic data, on the CPU, in
a few seconds, logging through faultwarden.model like a real job would.

    python -m faultwarden.model.demo_job --output-dir DIR [--steps 120] [--save-every 20]
        [--nan-at-step 57] [--nan-attempt 1] [--resume_from_checkpoint DIR/checkpoint-40]

- every `--save-every` steps: `DIR/checkpoint-<step>/model.pt` (torch.save of the model and
  optimizer) with a `model.pt.sha256` sidecar and HF-style `trainer_state.json`, then a
  checkpoint-saved event;
- `--nan-at-step N`: the loss at step N is made NaN, on attempt `--nan-attempt` only
  (`$FAULTWARDEN_ATTEMPT`, 1 when run by hand); the NaN reaches the weights through backward,
  so every later loss is NaN too, as in a real divergence;
- `--resume_from_checkpoint`: continue from that checkpoint's weights, optimizer and step.

Without torch it trains the same sized MLP with numpy (and says so), saving safetensors files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

from faultwarden.model import logging as fw

IN, HIDDEN, SAMPLES, BATCH, LR = 16, 32, 512, 32, 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="faultwarden.model.demo_job", description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--save-every", type=int, default=20)
    p.add_argument("--nan-at-step", type=int)
    p.add_argument("--nan-attempt", type=int, default=1)
    p.add_argument("--resume_from_checkpoint", "--resume-from-checkpoint", dest="resume", type=Path)
    p.add_argument("--step-delay", type=float, default=0.02, help="Seconds per step, so a person can watch.")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def attempt() -> int:
    return int(os.environ.get("FAULTWARDEN_ATTEMPT", "1"))


def write_checkpoint_files(folder: Path, weights: Path, step: int, history: list[dict]) -> None:
    """The sidecar and trainer_state.json next to the weights, then the checkpoint-saved event."""
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / (weights.name + ".sha256")).write_text(f"{digest}  {weights.name}\n")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))
    fw.log_checkpoint(folder, step)


class TorchTrainer:
    backend = "torch"

    def __init__(self, seed: int):
        import torch

        self.torch = torch
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(SAMPLES, IN, generator=g)
        self.y = self.x @ torch.randn(IN, 1, generator=g) + 0.1 * torch.randn(SAMPLES, 1, generator=g)
        self.model = torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)

    def step(self, step: int, poison: bool) -> tuple[float, float]:
        i = (step * BATCH) % SAMPLES
        xb, yb = self.x[i:i + BATCH], self.y[i:i + BATCH]
        loss = self.torch.nn.functional.mse_loss(self.model(xb), yb)
        if poison:
            loss = loss * float("nan")
        self.opt.zero_grad()
        loss.backward()
        grad_norm = self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), float("inf"))
        self.opt.step()
        return loss.item(), grad_norm.item()

    def save(self, folder: Path, step: int) -> Path:
        path = folder / "model.pt"
        self.torch.save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": step}, path)
        return path

    def load(self, folder: Path) -> int:
        state = self.torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        return int(state["step"])


class NumpyTrainer:
    """The same MLP by hand, for machines without torch."""

    backend = "numpy"

    def __init__(self, seed: int):
        import numpy as np

        self.np = np
        rng = np.random.default_rng(seed)
        self.x = rng.standard_normal((SAMPLES, IN), dtype=np.float32)
        self.y = self.x @ rng.standard_normal((IN, 1), dtype=np.float32) + 0.1 * rng.standard_normal((SAMPLES, 1), dtype=np.float32)
        self.w = {"w1": (rng.standard_normal((IN, HIDDEN)) / math.sqrt(IN)).astype(np.float32),
                  "b1": np.zeros(HIDDEN, np.float32),
                  "w2": (rng.standard_normal((HIDDEN, 1)) / math.sqrt(HIDDEN)).astype(np.float32),
                  "b2": np.zeros(1, np.float32)}

    def step(self, step: int, poison: bool) -> tuple[float, float]:
        np, w = self.np, self.w
        i = (step * BATCH) % SAMPLES
        xb, yb = self.x[i:i + BATCH], self.y[i:i + BATCH]
        h = np.maximum(xb @ w["w1"] + w["b1"], 0)
        err = h @ w["w2"] + w["b2"] - yb
        loss = float((err ** 2).mean()) * (float("nan") if poison else 1.0)
        d_out = 2 * err / len(xb) * (np.float32("nan") if poison else 1)
        grads = {"w2": h.T @ d_out, "b2": d_out.sum(0)}
        d_h = (d_out @ w["w2"].T) * (h > 0)
        grads.update(w1=xb.T @ d_h, b1=d_h.sum(0))
        for k in w:
            w[k] -= LR * grads[k]
        return loss, float(math.sqrt(sum(float((g ** 2).sum()) for g in grads.values())))

    def save(self, folder: Path, step: int) -> Path:
        path = folder / "model.safetensors"
        write_safetensors(path, {**self.w, "step": self.np.array([step], self.np.int64)})
        return path

    def load(self, folder: Path) -> int:
        tensors = read_safetensors(folder / "model.safetensors", self.np)
        step = int(tensors.pop("step")[0])
        self.w.update(tensors)
        return step


DTYPES = {"float32": "F32", "int64": "I64"}


def write_safetensors(path: Path, tensors: dict) -> None:
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        data = array.tobytes()
        header[name] = {"dtype": DTYPES[str(array.dtype)], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def read_safetensors(path: Path, np) -> dict:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    types = {v: k for k, v in DTYPES.items()}
    return {name: np.frombuffer(data[8 + n + a:8 + n + b], dtype=types[info["dtype"]]).reshape(info["shape"]).copy()
            for name, info in header.items() if name != "__metadata__"
            for a, b in [info["data_offsets"]]}


def make_trainer(seed: int):
    try:
        return TorchTrainer(seed)
    except ImportError:
        return NumpyTrainer(seed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fw.configure(service="demo-train")
    log = fw.get_logger("demo")
    trainer = make_trainer(args.seed)
    if trainer.backend != "torch":
        log.warning("torch is not installed: training the same MLP with numpy instead")
    start, history = 0, []
    if args.resume is not None:
        start = trainer.load(args.resume)
        state = args.resume / "trainer_state.json"
        history = json.loads(state.read_text())["log_history"] if state.exists() else []
        log.info(f"resumed from {args.resume} at step {start}", **{"ml.step": start})
    else:
        log.info(f"training a {IN}-{HIDDEN}-1 MLP with {trainer.backend} for {args.steps} steps")
    inject = args.nan_at_step is not None and attempt() == args.nan_attempt
    for step in range(start + 1, args.steps + 1):
        began = time.perf_counter()
        loss, grad_norm = trainer.step(step, poison=inject and step == args.nan_at_step)
        time.sleep(args.step_delay)
        fw.log_step(step, loss=loss, grad_norm=grad_norm, learning_rate=LR,
                    step_time_s=time.perf_counter() - began)
        history.append({"step": step, "loss": loss, "grad_norm": grad_norm})
        if step % args.save_every == 0:
            folder = args.output_dir / f"checkpoint-{step}"
            folder.mkdir(parents=True, exist_ok=True)
            write_checkpoint_files(folder, trainer.save(folder, step), step, history)
    log.info(f"training complete at step {args.steps}", **{"ml.step": args.steps})
    return 0


if __name__ == "__main__":
    sys.exit(main())
