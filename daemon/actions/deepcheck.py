"""`python -m faultwarden.daemon.actions.deepcheck PATH...`: load checkpoints with torch and
check every floating-point tensor is finite. Run as a child process by `checkpoints verify
--deep`, so the daemon itself never imports torch.

Prints one JSON object per path: {"path", "ok", "tensors", "problems": [...]}; exits 0 when all
are ok, 1 when one is not, 3 when torch is missing.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from faultwarden.daemon.actions.integrity import SAFETENSORS_SUFFIX, WEIGHT_SUFFIXES

MAX_PROBLEMS = 10


def tensors(obj, prefix: str = ""):
    """Every tensor in a loaded state (nested dicts/lists, as optimizers save them)."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix or "tensor", obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from tensors(value, f"{prefix}[{i}]")


def check(path: Path) -> dict:
    import torch

    files = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES) if path.is_dir() else [path]
    problems: list[str] = []
    count = 0
    for f in files:
        try:
            if f.suffix == SAFETENSORS_SUFFIX:
                from safetensors.torch import load_file

                state = load_file(str(f), device="cpu")
            else:
                state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any load failure is the verdict
            problems.append(f"{f.name}: does not load ({type(exc).__name__}: {str(exc)[:200]})")
            continue
        for name, t in tensors(state):
            count += 1
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                problems.append(f"{f.name}: {name} holds NaN or inf")
                if len(problems) >= MAX_PROBLEMS:
                    break
    if not files:
        problems.append("no weight files")
    return {"path": str(path), "ok": not problems, "tensors": count, "problems": problems}


def main(argv: list[str]) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print(json.dumps({"error": "torch is not installed in this Python"}))
        return 3
    ok = True
    for arg in argv:
        result = check(Path(arg))
        ok = ok and result["ok"]
        print(json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
