"""faultwarden.model.inference: timing batch inference calls, without torch."""
from __future__ import annotations

import textwrap

import pytest

from faultwarden.model.inference import Sampling, batch_size_of, instrument_inference, timed_inference


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
    assert event["ml.tokens_per_s"] == pytest.approx(320 / (call.latency_ms / 1000))
    assert event["ml.samples_per_s"] == pytest.approx(16 / (call.latency_ms / 1000))
    assert isinstance(event["ml.memory.rss_bytes"], int) and event["ml.memory.rss_bytes"] > 0
    assert event["model"] == "tiny" and event["labels.run_id"] == "svc-1"
    assert "ml.inference.skipped" not in event and call.logged


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


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_calls_beyond_the_rate_are_folded_into_the_next_event(fw, tmp_path, read_events):
    log = tmp_path / "serve.jsonl"
    fw.configure(log)
    clock = FakeClock()
    sampling = Sampling(max_events_per_s=2, clock=clock)   # bursts of 2, then 2 a second

    def call(latency_ms, batch=8):
        with timed_inference(batch, sampling=sampling) as timed:
            pass
        return timed

    calls = [call(1.0) for _ in range(5)]              # one instant: the burst of 2 is written
    assert [c.logged for c in calls] == [True, True, False, False, False]
    clock.now += 0.5                                   # one token back
    later = call(1.0)
    assert later.logged
    first, second, third = read_events(log)
    assert "ml.inference.skipped" not in first and "ml.inference.skipped" not in second
    assert third["ml.inference.skipped"] == 3
    assert third["ml.latency_max_ms"] == max(c.latency_ms for c in calls[2:] + [later])
    assert third["ml.batch_size"] == 8


def test_a_failed_call_is_written_even_beyond_the_rate(fw, tmp_path, read_events):
    log = tmp_path / "serve.jsonl"
    fw.configure(log)
    sampling = Sampling(max_events_per_s=1, clock=FakeClock())
    with timed_inference(4, sampling=sampling):
        pass
    with timed_inference(4, sampling=sampling) as skipped:
        pass
    with pytest.raises(RuntimeError):
        with timed_inference(4, sampling=sampling):
            raise RuntimeError("device lost")
    assert not skipped.logged
    ok, failed = read_events(log)
    assert ok["event.outcome"] == "success"
    assert failed["event.outcome"] == "failure" and failed["error.message"] == "device lost"
    assert failed["ml.memory.rss_bytes"] > 0 and failed["ml.batch_size"] == 4


def test_sampling_off_writes_every_call(fw, tmp_path, read_events):
    log = tmp_path / "serve.jsonl"
    fw.configure(log)
    sampling = Sampling(max_events_per_s=None, clock=FakeClock())
    for _ in range(200):
        with timed_inference(1, sampling=sampling, memory=False):
            pass
    events = read_events(log)
    assert len(events) == 200 and "ml.memory.rss_bytes" not in events[0]
    with pytest.raises(ValueError, match="max_events_per_s must be > 0 or None, not 0"):
        Sampling(max_events_per_s=0)
