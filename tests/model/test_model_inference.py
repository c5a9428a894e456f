"""faultwarden.model.inference: timing batch inference calls, without torch."""
from __future__ import annotations

import textwrap

import pytest

from faultwarden.model.inference import batch_size_of, instrument_inference, timed_inference


def test_a_timed_call_is_one_inference_event(fw, tmp_path, read_events):
    log = tmp_path / "serve.jsonl"
    fw.configure(log, run_id="svc-1")
    with timed_inference(model="tiny") as call:
        batch = list(range(16))  # the batch size is known only inside the block
        call.batch_size = len(batch)
        call.tokens = 320
    (event,) = read_events(log)
    assert event["event.action"] == "inference" and event["event.outcome"] == "success"
    assert event["ml.batch_size"] == 16
    assert event["ml.latency_ms"] == call.latency_ms >= 0
    assert event["ml.tokens_per_s"] > 0
    assert event["model"] == "tiny" and event["labels.run_id"] == "svc-1"


def test_a_failing_call_is_one_error_event_and_the_exception_goes_on(fw, tmp_path, read_events):
    log = tmp_path / "serve.jsonl"
    fw.configure(log)
    with pytest.raises(MemoryError):
        with timed_inference(batch_size=64):
            raise MemoryError("batch too large")
    (event,) = read_events(log)
    assert event["log.level"] == "error"
    assert event["event.action"] == "inference" and event["event.outcome"] == "failure"
    assert event["error.type"] == "MemoryError" and event["error.message"] == "batch too large"
    assert "raise MemoryError" in event["error.stack_trace"]
    assert event["ml.batch_size"] == 64 and event["ml.latency_ms"] >= 0


def test_the_decorator_reads_the_batch_size_from_the_arguments(fw, tmp_path, read_events):
    log = tmp_path / "serve.jsonl"
    fw.configure(log)

    @instrument_inference
    def predict(texts, temperature=1.0):
        return [t.upper() for t in texts]

    @instrument_inference(batch_size=lambda prompts, n: len(prompts) * n, route="/generate")
    def generate(prompts, n):
        return prompts * n

    assert predict(["a", "b", "c"]) == ["A", "B", "C"]
    assert predict.__name__ == "predict"
    generate(["x", "y"], 3)
    first, second = read_events(log)
    assert first["ml.batch_size"] == 3
    assert second["ml.batch_size"] == 6 and second["route"] == "/generate"


def test_batch_size_of_common_batch_shapes():
    np = pytest.importorskip("numpy")
    assert batch_size_of(np.zeros((5, 7))) == 5
    assert batch_size_of(object(), {"input_ids": np.zeros((4, 9)), "mask": np.ones((4, 9))}) == 4
    assert batch_size_of(texts=["a", "b"]) == 2
    assert batch_size_of(np.float64(1.0), 3) is None  # a scalar has no batch dimension


def test_an_inference_error_that_kills_the_process_is_logged_once(tmp_path, run_python, read_events):
    log = tmp_path / "serve.jsonl"
    result = run_python(textwrap.dedent("""
        from faultwarden.model import logging as fw
        from faultwarden.model.inference import instrument_inference
        fw.configure()
        @instrument_inference
        def predict(batch):
            raise ValueError("shape mismatch")
        predict([1, 2])
    """), env={"FAULTWARDEN_LOG_PATH": str(log)})
    assert result.returncode == 1 and "shape mismatch" in result.stderr
    (event,) = read_events(log)  # the excepthook saw it was already written
    assert event["error.type"] == "ValueError" and event["event.outcome"] == "failure"
    assert event["ml.batch_size"] == 2
