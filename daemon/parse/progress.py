"""Numbers in the progress lines of trainers that did not write for faultwarden, logfmt lines,
and user-defined line formats.

Progress lines carry `key: value` or `key=value` pairs between `|`, `,` or runs of spaces:

    iteration 29020/292968 | elapsed time per iteration (ms): 1234.5 | lm loss: 2.77E+00 | ...
    iter 100: loss 4.5123, time 98.21ms, mfu 41.3%
    eta: 0:10:00  iter: 19  total_loss: 1.2  time: 0.4012  lr: 0.001
    epoch 001 | loss 4.5 | ppl 22.6 | wps 12345 | ups 1.2 | num_updates 100 | gnorm 1.2

They are read generically; an alias table (extended per source by `aliases:` in the config)
names the keys that mean the design's `ml.*` fields, with the unit converted. A line counts as
progress only when at least two known keys are found, so prose with one number stays prose.
"""
from __future__ import annotations

import re
from typing import Any

# key (lower case, single spaces) -> (field, factor to the field's unit)
ALIASES: dict[str, tuple[str, float]] = {
    "loss": ("ml.loss", 1), "lm loss": ("ml.loss", 1), "total_loss": ("ml.loss", 1),
    "train_loss": ("ml.loss", 1), "train loss": ("ml.loss", 1),
    "iteration": ("ml.step", 1), "iter": ("ml.step", 1), "step": ("ml.step", 1),
    "global_step": ("ml.step", 1), "num_updates": ("ml.step", 1), "steps": ("ml.step", 1),
    "epoch": ("ml.epoch", 1),
    "lr": ("ml.learning_rate", 1), "learning rate": ("ml.learning_rate", 1),
    "learning_rate": ("ml.learning_rate", 1),
    "grad norm": ("ml.grad_norm", 1), "gnorm": ("ml.grad_norm", 1), "grad_norm": ("ml.grad_norm", 1),
    "loss scale": ("ml.loss_scale", 1), "loss_scale": ("ml.loss_scale", 1),
    "elapsed time per iteration (ms)": ("ml.step_time_s", 1e-3), "time": ("ml.step_time_s", 1),
    "step_time": ("ml.step_time_s", 1),
    "samples per second": ("ml.samples_per_s", 1), "samples/s": ("ml.samples_per_s", 1),
    "tokens per second": ("ml.tokens_per_s", 1), "wps": ("ml.tokens_per_s", 1),
    "tokens/s": ("ml.tokens_per_s", 1), "ups": ("ml.steps_per_s", 1), "it/s": ("ml.steps_per_s", 1),
    "global batch size": ("ml.batch_size", 1), "bsz": ("ml.batch_size", 1),
    "batch_size": ("ml.batch_size", 1),
}
UNITS = {"ms": 1e-3, "s": 1.0, "us": 1e-6, "µs": 1e-6, "%": 1.0, "": 1.0}
TIME_FIELDS = frozenset(("ml.step_time_s",))

_NUM = r"[-+]?(?:nan|inf|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
_PAIR = re.compile(
    rf"(?P<key>[A-Za-z][A-Za-z_ ()/%.-]*?)\s*[:=]?\s*(?P<num>{_NUM})(?:/\s*\d+)?(?P<unit>ms|us|µs|s|%)?(?![\w.])",
    re.IGNORECASE)
_BARS, _COMMAS, _SPACES = re.compile(r"\||\[|\]"), re.compile(r",|\[|\]"), re.compile(r"\s{2,}|\[|\]")


def _segments(message: str) -> list[str]:
    """Pairs between `|` (Megatron, fairseq), else `,` (nanoGPT), else runs of spaces (detectron2)."""
    splitter = _BARS if "|" in message else _COMMAS if "," in message else _SPACES
    return splitter.split(message)


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def progress_fields(message: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """`ml.*` fields of a progress line; {} when it is not one."""
    found: dict[str, Any] = {}
    for segment in _segments(message):
        for m in _PAIR.finditer(segment):
            key = _key(m["key"])
            field = (extra or {}).get(key)
            factor = 1.0
            if field is None:
                alias = ALIASES.get(key)
                if alias is None:
                    continue
                field, factor = alias
            value = float(m["num"])
            unit = (m["unit"] or "").lower()
            if field in TIME_FIELDS and unit:
                factor = UNITS.get(unit, factor)
            value *= factor
            if field in ("ml.step", "ml.batch_size") and value.is_integer():
                value = int(value)
            found.setdefault(field, value)
    return found if len(found) >= 2 else {}


_LOGFMT_PAIR = re.compile(r'([A-Za-z_][\w.\-/]*)=("(?:[^"\\]|\\.)*"|[^\s"]*)')
_LOGFMT_START = re.compile(r"[A-Za-z_][\w.\-/]*=")


def logfmt(line: str) -> dict[str, Any] | None:
    """A logfmt line (`level=info msg="step done" step=10 loss=0.5`) as a record, else None."""
    if not _LOGFMT_START.match(line):
        return None
    pairs = _LOGFMT_PAIR.findall(line)
    if len(pairs) < 2 or sum(len(k) + len(v) + 1 for k, v in pairs) < len(line.replace(" ", "")) * 0.9:
        return None  # mostly prose with an `=` in it
    record: dict[str, Any] = {}
    for key, raw in pairs:
        value: Any = raw[1:-1].replace('\\"', '"') if raw.startswith('"') else raw
        if not raw.startswith('"'):
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    pass
        record[key] = value
    return record


class UserFormat:
    """A source's own `pattern:`: a regex with named groups. Groups named like event fields fill
    them (`message`, `level`, `timestamp`, `ml.step`, `labels.block`); other names go to
    `labels.<name>`. Python's `(?P<name>...)` cannot hold dots, so `__` stands for `.`."""

    def __init__(self, pattern: str):
        self.regex = re.compile(pattern)

    def record(self, line: str) -> dict[str, Any] | None:
        m = self.regex.match(line)
        if m is None:
            return None
        return {name.replace("__", "."): value for name, value in m.groupdict().items() if value is not None}
