"""Hugging Face Trainer instrumentation (imports transformers: import this module only in jobs
that use it).

One line, either::

    trainer = Trainer(..., callbacks=[FaultwardenCallback()])   # HF's own logs, checkpoints
    from faultwarden.model.hf import FaultwardenTrainer as Trainer  # ... plus the raw loss

- ``FaultwardenCallback`` writes each ``on_log`` (``ml.loss``, ``ml.grad_norm``,
  ``ml.learning_rate``, ``ml.epoch``, ``ml.step``; mean ``ml.step_time_s``, ``ml.samples_per_s``,
  ``ml.tokens_per_s`` over the steps since the last log, evaluation and saving excluded;
  ``ml.memory.*``), each ``on_save`` as a ``checkpoint-saved`` event with the sha256 of the
  weights (hashed on a background thread: training goes on meanwhile; ``train()`` returns once
  every save is logged), and train begin/end.
- ``RawLossMixin`` (``class MyTrainer(RawLossMixin, Trainer)``) writes the loss of every
  ``faultwarden_loss_every``-th optimizer step (default 1) as it came out of ``training_step``:
  before HF's ``logging_nan_inf_filter`` replaces a NaN/inf loss with the running mean, and
  independent of ``logging_steps`` (500 by default). With the mixin in place the callback's
  copy of HF's averaged loss moves to ``ml.hf.loss``, so ``ml.loss`` is one series: the raw one.

Every optimizer step's loss is the sum of ``training_step``'s return values over its
micro-batches (what HF itself accumulates). The sum stays on the device; ``.item()`` (one
device synchronisation) runs only for the steps that are written.
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from faultwarden.model import checkpoint
from faultwarden.model import logging as fwlog

# The files of an HF checkpoint folder that hold the weights (safetensors or torch pickles,
# sharded or not, full model or PEFT adapter). Optimizer/scheduler/RNG state is not hashed: it
# can be twice the size of the model and is not what a restore is verified against.
WEIGHT_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model*.bin.index.json",
    "adapter_model.bin",
)

NAN_FILTER_WARNING = (
    "TrainingArguments.logging_nan_inf_filter is on: the Trainer's own logs replace a NaN/inf "
    "loss with the mean of the previous ones. faultwarden logs the raw loss as ml.loss; set "
    "logging_nan_inf_filter=False to see NaN in HF's logs too."
)


class _StepClock:
    """Time per optimizer step, from one on_step_end to the next. Evaluation and checkpoint
    saving happen after on_step_end, so the clock restarts after them (`pause_end`)."""

    def __init__(self) -> None:
        self.last: float | None = None
        self.steps = 0
        self.busy_s = 0.0

    def start(self) -> None:
        self.last = time.perf_counter()
        self.steps, self.busy_s = 0, 0.0

    def step_end(self) -> float | None:
        now = time.perf_counter()
        took = now - self.last if self.last is not None else None
        if took is not None:
            self.steps += 1
            self.busy_s += took
        self.last = now
        return took

    def pause_end(self) -> None:
        self.last = time.perf_counter()

    def window(self) -> tuple[int, float]:
        """(steps, seconds) since the last call, then starts a new window."""
        steps, busy = self.steps, self.busy_s
        self.steps, self.busy_s = 0, 0.0
        return steps, busy


def _global_batch(args, state) -> int:
    per_device = state.train_batch_size or args.per_device_train_batch_size
    return per_device * args.gradient_accumulation_steps * max(args.world_size, 1)


class FaultwardenCallback(TrainerCallback):
    """Writes the Trainer's logs, checkpoints and train begin/end as faultwarden events.

    ``memory``: add ``ml.memory.*`` to each log event. ``weight_patterns``: which files of a
    checkpoint folder to fingerprint (all files when none matches). ``hash_in_background``:
    hash a checkpoint on a background thread (the default) rather than in ``on_save``, where the
    training loop waits for it (seconds per gigabyte).
    """

    def __init__(self, *, memory: bool = True, weight_patterns: tuple[str, ...] = WEIGHT_PATTERNS,
                 hash_in_background: bool = True) -> None:
        self.memory = memory
        self.weight_patterns = weight_patterns
        self.hash_in_background = hash_in_background
        # Where HF's averaged loss goes; RawLossMixin moves it to ml.hf.loss (see module doc).
        self.hf_loss_field = "ml.loss"
        self.clock = _StepClock()
        self._tokens_seen = 0
        fwlog.get_logger()  # configure now, so the excepthook is in place before training starts

    # -- lifecycle -------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self.clock.start()
        self._tokens_seen = state.num_input_tokens_seen
        fwlog.log_step(
            state.global_step,
            action="train-begin",
            message=f"training starts at step {state.global_step} of {state.max_steps}",
            memory=self.memory,
            **{"ml.max_steps": state.max_steps, "ml.batch_size": _global_batch(args, state)},
        )

    def on_train_end(self, args, state, control, **kwargs):
        fwlog.wait_for_checkpoints()   # every save of this run is logged before its end
        fwlog.log_step(state.global_step, epoch=state.epoch, action="train-end",
                       message=f"training ends at step {state.global_step}", memory=self.memory)

    def on_step_end(self, args, state, control, **kwargs):
        self.clock.step_end()

    def on_evaluate(self, args, state, control, **kwargs):
        self.clock.pause_end()

    # -- logs ------------------------------------------------------------------------------------
    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not fwlog.is_enabled():
            return
        known = {"loss": self.hf_loss_field, "grad_norm": "ml.grad_norm",
                 "learning_rate": "ml.learning_rate", "epoch": "ml.epoch"}
        fields: dict[str, Any] = {}
        for key, value in logs.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key in known:
                fields[known[key]] = value
            elif key.startswith("eval_"):
                fields[f"ml.eval.{key[5:]}"] = value
            else:
                fields[f"ml.hf.{key}"] = value
        if any(key.startswith("eval_") for key in logs):
            action = "evaluation"
        elif "loss" not in logs and ("train_loss" in logs or "total_flos" in logs):
            # The end-of-train summary. Not told by `train_runtime`: with
            # include_num_input_tokens_seen, every periodic log carries one too.
            action = "train-summary"
        else:
            action = "train-log"
            steps, busy = self.clock.window()
            if steps and busy > 0:
                fields["ml.step_time_s"] = busy / steps
                fields["ml.samples_per_s"] = steps * _global_batch(args, state) / busy
                tokens = state.num_input_tokens_seen - self._tokens_seen
                if tokens > 0:
                    fields["ml.tokens_per_s"] = tokens / busy
            self._tokens_seen = state.num_input_tokens_seen
        fwlog.log_step(state.global_step, action=action, memory=self.memory and action == "train-log",
                       message=f"{action} at step {state.global_step}: {logs}", **fields)

    # -- checkpoints -----------------------------------------------------------------------------
    def on_save(self, args, state, control, **kwargs):
        try:
            if args.should_save:  # the process that wrote the files hashes them
                folder = os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")
                files = checkpoint.select(folder, self.weight_patterns) if os.path.isdir(folder) else []
                log = fwlog.log_checkpoint_in_background if self.hash_in_background else fwlog.log_checkpoint
                log(folder, state.global_step, files=files or None)
        finally:
            self.clock.pause_end()


class _RawLoss(TrainerCallback):
    """RawLossMixin's half that sees the step boundaries."""

    def __init__(self, trainer: "RawLossMixin") -> None:
        self.trainer = trainer
        self.total = None  # the step's loss so far, a device tensor
        self.clock = _StepClock()
        self.warned = False

    def add(self, loss, step: int) -> None:
        if step % self.trainer.faultwarden_loss_every:
            return
        self.total = loss if self.total is None else self.total + loss

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock.start()
        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, FaultwardenCallback):
                callback.hf_loss_field = "ml.hf.loss"
        if args.logging_nan_inf_filter and not self.warned and state.is_world_process_zero:
            self.warned = True
            fwlog.get_logger().warning(NAN_FILTER_WARNING, **{"event.action": "nan-inf-filter-on"})
            warnings.warn(NAN_FILTER_WARNING, stacklevel=2)

    def on_step_end(self, args, state, control, **kwargs):
        took = self.clock.step_end()
        if self.total is None:
            return
        total, self.total = self.total, None
        fwlog.log_step(state.global_step, loss=total, epoch=state.epoch, step_time_s=took)

    def on_evaluate(self, args, state, control, **kwargs):
        self.clock.pause_end()

    def on_save(self, args, state, control, **kwargs):
        self.clock.pause_end()


class RawLossMixin:
    """Put before ``Trainer`` in the bases. ``faultwarden_loss_every`` (class attribute or
    constructor keyword, default 1): write the raw loss of every n-th optimizer step."""

    faultwarden_loss_every: int = 1

    def __init__(self, *args: Any, faultwarden_loss_every: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if faultwarden_loss_every is not None:
            self.faultwarden_loss_every = faultwarden_loss_every
        every = self.faultwarden_loss_every
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"faultwarden_loss_every must be a whole number >= 1, not {every!r}")
        self._faultwarden_raw_loss = _RawLoss(self)
        self.add_callback(self._faultwarden_raw_loss)
        fwlog.get_logger()

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # global_step counts finished optimizer steps: this micro-batch belongs to the next one.
        self._faultwarden_raw_loss.add(loss, self.state.global_step + 1)
        return loss


class FaultwardenTrainer(RawLossMixin, Trainer):
    """``Trainer`` with the raw loss and, unless one is passed, a ``FaultwardenCallback``."""

    def __init__(self, *args: Any, callbacks: list | None = None, **kwargs: Any) -> None:
        callbacks = list(callbacks or [])
        if not any(isinstance(c, FaultwardenCallback) or c is FaultwardenCallback for c in callbacks):
            callbacks.append(FaultwardenCallback())
        super().__init__(*args, callbacks=callbacks, **kwargs)


__all__ = ["FaultwardenCallback", "FaultwardenTrainer", "RawLossMixin", "WEIGHT_PATTERNS", "NAN_FILTER_WARNING"]
