"""The scenario instrumentation serves, end to end: a tiny BERT classifier fine-tuned with the HF
Trainer and `FaultwardenCallback`, then served for batched inference through
`faultwarden.model.inference`. The log file must hold every number a team watches, typed
correctly, both as the ECS JSON written and as the daemon's parser reads it.

Nothing is downloaded: the model is built from a `BertConfig` (2 layers, hidden 32) and the
tokenizer from a vocabulary made here.
"""
from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import pytest

pytestmark = pytest.mark.torch

POSITIVE = ["good", "great", "fine", "nice", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
NOUNS = ["movie", "film", "plot", "show", "cast"]
FILLER = ["the", "was", "really", "quite", "a"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_STEPS, SAVE_STEPS, LOG_STEPS, BATCH = 6, 3, 2, 8
INFERENCE_BATCHES = 4


def sentences(count: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        label = rng.randrange(2)
        adjective = rng.choice(POSITIVE if label else NEGATIVE)
        out.append((f"the {rng.choice(NOUNS)} was {rng.choice(FILLER)} {adjective}", label))
    return out


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Fine-tune, save, serve; returns the log file and where the checkpoints went."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from faultwarden.model import inference
    from faultwarden.model import logging as fw
    from faultwarden.model.hf import FaultwardenCallback

    folder = tmp_path_factory.mktemp("bert")
    log = folder / "job.jsonl"
    fw.reset()
    inference.configure_sampling()
    fw.configure(log, run_id="bert-1", service="sentiment")
    try:
        words = SPECIAL + sorted(set(POSITIVE + NEGATIVE + NOUNS + FILLER))
        tokenizer = transformers.BertTokenizer(vocab={w: i for i, w in enumerate(words)})
        torch.manual_seed(0)
        config = transformers.BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, intermediate_size=64, num_labels=2,
                                         max_position_embeddings=32)
        model = transformers.BertForSequenceClassification(config)

        class Reviews(torch.utils.data.Dataset):
            def __init__(self, rows):
                texts, self.labels = zip(*rows)
                self.encoded = tokenizer(list(texts), padding="max_length", max_length=10, return_tensors="pt")

            def __len__(self):
                return len(self.labels)

            def __getitem__(self, i):
                item = {k: v[i] for k, v in self.encoded.items()}
                item["labels"] = torch.tensor(self.labels[i])
                return item

        args = transformers.TrainingArguments(
            output_dir=str(folder / "out"), max_steps=MAX_STEPS, per_device_train_batch_size=BATCH,
            logging_steps=LOG_STEPS, save_strategy="steps", save_steps=SAVE_STEPS, save_only_model=True,
            learning_rate=5e-4, use_cpu=True, report_to="none", disable_tqdm=True,
            include_num_input_tokens_seen=True)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=Reviews(sentences(64, 1)),
                                       callbacks=[FaultwardenCallback()])
        trainer.train()

        # Serving: batched inference, timed by the context manager and by the decorator.
        model.eval()
        texts = [text for text, _ in sentences(INFERENCE_BATCHES * BATCH, 2)]
        for start in range(0, len(texts) - BATCH, BATCH):
            batch = tokenizer(texts[start:start + BATCH], padding=True, return_tensors="pt")
            with inference.timed_inference(batch_size=BATCH, **{"labels.model": "sentiment-tiny"}) as call, torch.no_grad():
                model(**batch)
                call.tokens = int(batch["attention_mask"].sum())

        @inference.instrument_inference(**{"labels.model": "sentiment-tiny"})
        def predict(batch):
            with torch.no_grad():
                return model(**batch).logits.argmax(-1)

        predict(tokenizer(texts[-BATCH:], padding=True, return_tensors="pt"))
    finally:
        fw.reset()
    return log, folder / "out"


def by_action(events, action):
    return [e for e in events if e.get("event.action") == action]


def check_every_field(events, out: Path, *, timestamps: type):
    """Every field the issue names, with its type (`timestamps`: str in the JSON, float parsed)."""
    for e in events:
        assert isinstance(e["@timestamp"], timestamps)
        assert e["labels.run_id"] == "bert-1" and e["service.name"] == "sentiment"
        assert isinstance(e["process.pid"], int) and isinstance(e["host.name"], str)
        assert e["log.level"] in ("info", "warning") and isinstance(e["message"], str)
        assert (e["ml.rank"], e["ml.world_size"]) == (0, 1)

    logs = by_action(events, "train-log")
    assert [e["ml.step"] for e in logs] == list(range(LOG_STEPS, MAX_STEPS + 1, LOG_STEPS))
    for e in logs:
        for name in ("ml.loss", "ml.grad_norm", "ml.learning_rate", "ml.epoch", "ml.step_time_s",
                     "ml.samples_per_s", "ml.tokens_per_s"):
            assert isinstance(e[name], float) and math.isfinite(e[name]), (name, e.get(name))
        assert isinstance(e["ml.step"], int)
        assert e["ml.loss"] > 0 and e["ml.grad_norm"] > 0 and e["ml.learning_rate"] > 0 and e["ml.epoch"] > 0
        assert e["ml.step_time_s"] > 0
        assert e["ml.samples_per_s"] == pytest.approx(BATCH / e["ml.step_time_s"])
        assert isinstance(e["ml.memory.rss_bytes"], int) and e["ml.memory.rss_bytes"] > 0

    (begin,) = by_action(events, "train-begin")
    (end,) = by_action(events, "train-end")
    assert begin["ml.max_steps"] == MAX_STEPS and begin["ml.batch_size"] == BATCH
    assert end["ml.step"] == MAX_STEPS
    assert events.index(end) > max(events.index(e) for e in by_action(events, "checkpoint-saved"))

    saved = by_action(events, "checkpoint-saved")
    assert [e["ml.checkpoint.step"] for e in saved] == list(range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS))
    for e in saved:
        folder = out / f"checkpoint-{e['ml.checkpoint.step']}"
        weights = folder / "model.safetensors"
        assert e["event.outcome"] == "success"
        assert e["ml.checkpoint.path"] == str(folder) and e["ml.checkpoint.files"] == ["model.safetensors"]
        # The hash of the weights file as saved (a one-file folder: sha256 of `sha256sum`'s line).
        line = f"{hashlib.sha256(weights.read_bytes()).hexdigest()}  model.safetensors\n"
        assert e["ml.checkpoint.sha256"] == hashlib.sha256(line.encode()).hexdigest()
        assert isinstance(e["ml.checkpoint.size_bytes"], int) and e["ml.checkpoint.size_bytes"] == weights.stat().st_size

    served = by_action(events, "inference")
    assert len(served) == INFERENCE_BATCHES
    for e in served:
        assert e["event.outcome"] == "success" and e["labels.model"] == "sentiment-tiny"
        assert isinstance(e["ml.batch_size"], int) and e["ml.batch_size"] == BATCH
        assert isinstance(e["ml.latency_ms"], float) and e["ml.latency_ms"] > 0
        assert e["ml.samples_per_s"] == pytest.approx(BATCH / (e["ml.latency_ms"] / 1000))
        assert isinstance(e["ml.memory.rss_bytes"], int) and e["ml.memory.rss_bytes"] > 0
    assert all(isinstance(e["ml.tokens_per_s"], float) for e in served[:-1])   # the block set call.tokens


def test_the_log_holds_every_field_as_ecs_json(session, read_events):
    log, out = session
    events = read_events(log)
    assert all(e["ecs.version"] for e in events)
    check_every_field(events, out, timestamps=str)


def test_the_daemon_parser_reads_the_same_fields(session):
    from faultwarden.daemon.parse import read_file

    log, out = session
    events = list(read_file(log))
    assert not [e for e in events if "parse_error" in e.get("tags", [])]
    assert [e["log.file.line"] for e in events] == list(range(1, len(events) + 1))
    check_every_field(events, out, timestamps=float)
