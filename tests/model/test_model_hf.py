"""faultwarden.model.hf with a real (tiny) Hugging Face Trainer run on the CPU.

The model is a one-layer BERT classifier built from a config and fed random token ids: no hub,
no tokenizer, a few seconds per run.
"""
from __future__ import annotations

import hashlib
import math
import sys
import types
import warnings

import pytest

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def hf():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it
    from faultwarden.model import hf as fwhf

    class Tokens(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            ids = torch.randint(0, 100, (8,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "attention_mask": torch.ones(8, dtype=torch.long), "labels": torch.tensor(i % 2)}

    def model(nan_at_batch: int | None = None):
        """The classifier; its loss turns NaN at the given training micro-batch (1-based)."""
        torch.manual_seed(0)
        config = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=37, vocab_size=100, num_labels=2)
        net = transformers.BertForSequenceClassification(config)
        batches = {"n": 0}

        def poison(module, args, output):
            if module.training:
                batches["n"] += 1
                if batches["n"] == nan_at_batch:
                    output.loss = output.loss * float("nan")
            return output

        net.register_forward_hook(poison)
        return net

    def args(tmp_path, **overrides):
        settings = dict(output_dir=str(tmp_path / "out"), max_steps=6, per_device_train_batch_size=4,
                        use_cpu=True, report_to="none", disable_tqdm=True, save_strategy="no")
        settings.update(overrides)
        return transformers.TrainingArguments(**settings)

    return types.SimpleNamespace(torch=torch, transformers=transformers, fwhf=fwhf, model=model,
                                 args=args, dataset=Tokens())


def by_action(events, action):
    return [e for e in events if e.get("event.action") == action]


def test_raw_loss_shows_the_nan_that_the_trainer_filters(hf, fw, tmp_path, read_events):
    log = tmp_path / "train.jsonl"
    fw.configure(log, run_id="run-1")
    args = hf.args(tmp_path, save_strategy="steps", save_steps=4, save_only_model=True)
    assert args.logging_nan_inf_filter and args.logging_steps == 500  # HF's defaults
    trainer = hf.fwhf.FaultwardenTrainer(model=hf.model(nan_at_batch=3), args=args, train_dataset=hf.dataset)
    with pytest.warns(UserWarning, match="logging_nan_inf_filter"):
        trainer.train()

    events = read_events(log)
    steps = by_action(events, "train-step")
    assert [e["ml.step"] for e in steps] == [1, 2, 3, 4, 5, 6]  # every step, not every 500th
    assert all(math.isfinite(e["ml.loss"]) for e in steps[:2])
    assert math.isnan(steps[2]["ml.loss"]) and "loss=nan" in steps[2]["message"]
    assert all(e["labels.run_id"] == "run-1" and e["ml.step_time_s"] > 0 for e in steps)
    (warning,) = by_action(events, "nan-inf-filter-on")
    assert warning["log.level"] == "warning"

    saved = by_action(events, "checkpoint-saved")
    assert [e["ml.checkpoint.step"] for e in saved] == [4, 6]
    folder = tmp_path / "out" / "checkpoint-4"
    weights = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert saved[0]["ml.checkpoint.path"] == str(folder)
    assert saved[0]["ml.checkpoint.files"] == ["model.safetensors"]  # the weights, not the config
    assert saved[0]["ml.checkpoint.sha256"] == hashlib.sha256(f"{weights}  model.safetensors\n".encode()).hexdigest()
    assert saved[0]["ml.checkpoint.size_bytes"] == (folder / "model.safetensors").stat().st_size
    assert by_action(events, "train-begin")[0]["ml.max_steps"] == 6
    assert by_action(events, "train-end")[0]["ml.step"] == 6
    # With the raw loss in ml.loss, the Trainer's own (filtered) loss is kept apart.
    (summary,) = by_action(events, "train-summary")
    assert "ml.hf.train_loss" in summary and "ml.loss" not in summary

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()  # a second run of the same trainer does not warn again
    assert len(by_action(read_events(log), "nan-inf-filter-on")) == 1


def test_the_callback_alone_writes_the_trainer_logs(hf, fw, tmp_path, read_events):
    log = tmp_path / "train.jsonl"
    fw.configure(log)
    args = hf.args(tmp_path, max_steps=4, logging_steps=2)
    trainer = hf.transformers.Trainer(model=hf.model(), args=args, train_dataset=hf.dataset,
                                      callbacks=[hf.fwhf.FaultwardenCallback()])
    trainer.train()

    events = read_events(log)
    logs = by_action(events, "train-log")
    assert [e["ml.step"] for e in logs] == [2, 4]
    for event in logs:
        assert math.isfinite(event["ml.loss"]) and event["ml.grad_norm"] > 0
        assert event["ml.learning_rate"] > 0 and event["ml.epoch"] > 0
        assert event["ml.step_time_s"] > 0
        assert event["ml.samples_per_s"] == pytest.approx(4 / event["ml.step_time_s"])
        assert event["ml.memory.rss_bytes"] > 0
    assert by_action(events, "train-step") == []  # no mixin: no raw loss
    assert by_action(events, "nan-inf-filter-on") == []


def test_one_raw_loss_per_optimizer_step_with_gradient_accumulation(hf, fw, tmp_path, read_events):
    log = tmp_path / "train.jsonl"
    fw.configure(log)
    args = hf.args(tmp_path, max_steps=3, gradient_accumulation_steps=2, logging_steps=1,
                   logging_nan_inf_filter=False)
    trainer = hf.fwhf.FaultwardenTrainer(model=hf.model(), args=args, train_dataset=hf.dataset)
    trainer.train()

    events = read_events(log)
    raw = {e["ml.step"]: e["ml.loss"] for e in by_action(events, "train-step")}
    logged = {e["ml.step"]: e["ml.hf.loss"] for e in by_action(events, "train-log")}
    assert sorted(raw) == [1, 2, 3]  # two micro-batches each, one line per step
    for step in raw:  # logging every step, the Trainer's loss is the same sum
        assert raw[step] == pytest.approx(logged[step], rel=1e-5)
    assert by_action(events, "nan-inf-filter-on") == []  # the filter is off


def test_the_raw_loss_interval(hf, fw, tmp_path, read_events):
    log = tmp_path / "train.jsonl"
    fw.configure(log)
    trainer = hf.fwhf.FaultwardenTrainer(model=hf.model(), args=hf.args(tmp_path, logging_nan_inf_filter=False),
                                         train_dataset=hf.dataset, faultwarden_loss_every=2)
    trainer.train()
    assert [e["ml.step"] for e in by_action(read_events(log), "train-step")] == [2, 4, 6]

    with pytest.raises(ValueError, match="faultwarden_loss_every must be a whole number >= 1, not 0"):
        hf.fwhf.FaultwardenTrainer(model=hf.model(), args=hf.args(tmp_path), train_dataset=hf.dataset,
                                   faultwarden_loss_every=0)


def test_rank_comes_from_the_process_group_once_it_exists(hf, fw, tmp_path, monkeypatch, read_events):
    dist = hf.torch.distributed
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "9")
    log = tmp_path / "train.jsonl"
    fw.configure(log)
    fw.log_step(1, loss=1.0)  # before init_process_group: the launcher's variables
    hook = sys.excepthook  # init_process_group wraps it (rank prefix); put ours back after
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        fw.log_step(2, loss=0.9)
    finally:
        dist.destroy_process_group()
        sys.excepthook = hook
    before, after = read_events(log)
    assert (before["ml.rank"], before["ml.world_size"]) == (5, 9)
    assert (after["ml.rank"], after["ml.world_size"]) == (0, 1)


def test_an_out_of_memory_error_is_named_as_torch_names_it(hf, fw, tmp_path, read_events, capsys):
    log = tmp_path / "train.jsonl"
    fw.configure(log)
    try:
        raise hf.torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB.")
    except hf.torch.OutOfMemoryError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)  # what Python does with an uncaught one
    (event,) = read_events(log)
    assert event["error.type"] == "torch.OutOfMemoryError"
    assert event["message"] == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    assert "torch.OutOfMemoryError" in capsys.readouterr().err  # and the usual traceback follows
