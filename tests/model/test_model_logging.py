"""faultwarden.model.logging: what the job writes, without torch."""
from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import textwrap
import threading

import pytest


def test_configure_from_the_supervisor_environment(fw, tmp_path, monkeypatch, capsys, read_events):
    log = tmp_path / "logs" / "job.jsonl"  # the folder does not exist yet
    monkeypatch.setenv("FAULTWARDEN_LOG_PATH", str(log))
    monkeypatch.setenv("FAULTWARDEN_RUN_ID", "run-42")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "8")

    fw.configure(service="trainer")
    fw.log_step(7, loss=0.5, grad_norm=1.25, learning_rate=2e-5, epoch=0.1, memory=True)

    (raw,) = log.read_text().splitlines()
    assert raw.startswith('{"@timestamp":')  # ECS order: @timestamp, log.level, message first
    (event,) = read_events(log)
    assert event["log.level"] == "info"
    assert event["message"] == "step 7 loss=0.5 grad_norm=1.25 learning_rate=2e-05"
    assert event["ecs.version"]
    assert event["labels.run_id"] == "run-42"
    assert event["host.name"] == socket.gethostname()
    assert event["process.pid"] == os.getpid()
    assert event["service.name"] == "trainer"
    assert event["log.logger"] == "faultwarden.model"
    assert (event["ml.rank"], event["ml.local_rank"], event["ml.world_size"]) == (3, 1, 8)
    assert event["event.action"] == "train-step"
    assert (event["ml.step"], event["ml.loss"], event["ml.grad_norm"]) == (7, 0.5, 1.25)
    assert event["ml.learning_rate"] == 2e-5 and event["ml.epoch"] == 0.1
    assert event["ml.memory.rss_bytes"] > 0
    assert capsys.readouterr().out == ""  # a file was given: stdout stays the job's


def test_without_a_file_lines_go_to_stdout_and_rank_defaults_to_a_single_process(fw, capsys):
    fw.configure(service="svc")
    fw.log_inference(12.5, 8, tokens=400)

    (line,) = capsys.readouterr().out.splitlines()
    event = json.loads(line)
    assert event["ml"]["latency_ms"] == 12.5 and event["ml"]["batch_size"] == 8
    assert event["ml"]["tokens_per_s"] == pytest.approx(400 / 0.0125)
    assert (event["ml"]["rank"], event["ml"]["local_rank"], event["ml"]["world_size"]) == (0, 0, 1)
    assert "labels" not in event  # no run id known: no labels.run_id


def test_configure_is_idempotent_and_can_move_the_file(fw, tmp_path, read_events):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    logger = fw.configure(first, run_id="r")
    hook = sys.excepthook
    assert fw.configure(first, run_id="r") is logger  # same arguments: same logger, same file
    assert sys.excepthook is hook and getattr(hook, "_faultwarden", False)
    assert not getattr(fw._previous_hooks["sys"], "_faultwarden", False)  # never chains to itself
    fw.log_step(1, loss=1.0)
    assert len(read_events(first)) == 1  # one line per event, not one per configure call

    fw.configure(second, run_id="r")
    fw.log_step(2, loss=0.9)
    assert [e["ml.step"] for e in read_events(first)] == [1]
    assert [e["ml.step"] for e in read_events(second)] == [2]
    assert sys.excepthook is hook


def test_nan_and_infinity_stay_non_finite(fw, tmp_path, read_events):
    log = tmp_path / "job.jsonl"
    fw.configure(log)
    fw.log_step(3, loss=float("nan"), grad_norm=float("inf"), loss_scale=float("-inf"))

    raw = log.read_text()
    assert '"loss":NaN' in raw and '"grad_norm":Infinity' in raw and '"loss_scale":-Infinity' in raw
    (event,) = read_events(log)
    assert math.isnan(event["ml.loss"])
    assert event["ml.grad_norm"] == math.inf and event["ml.loss_scale"] == -math.inf
    assert "loss=nan" in event["message"]


def test_numpy_numbers_are_written_as_numbers(fw, tmp_path, read_events):
    np = pytest.importorskip("numpy")
    log = tmp_path / "job.jsonl"
    fw.configure(log)
    fw.log_step(np.int64(4), loss=np.float32(0.25))
    fw.get_logger("train").info("custom", **{"ml.tokens": np.int32(9)})

    step, custom = read_events(log)
    assert step["ml.step"] == 4 and step["ml.loss"] == 0.25
    assert custom["ml.tokens"] == 9 and custom["log.logger"] == "train"


def test_clashing_field_shapes_never_raise_into_the_job(fw, tmp_path, read_events):
    log = tmp_path / "job.jsonl"
    fw.configure(log, run_id="r")
    mine = {"team": "nlp"}
    fw.get_logger().info("a", labels="plain", ml=3)  # scalars where ECS objects go
    fw.get_logger().info("b", labels=mine, **{"labels.stage": "pre"})
    first, second = read_events(log)
    assert first["labels"] == "plain" and first["labels_run_id"] == "r"
    assert first["ml"] == 3 and first["ml_rank"] == 0
    assert (second["labels.team"], second["labels.stage"], second["labels.run_id"]) == ("nlp", "pre", "r")
    assert mine == {"team": "nlp"}  # the caller's dict is not written into


def test_log_checkpoint_of_a_file_and_of_a_folder(fw, tmp_path, read_events):
    log = tmp_path / "job.jsonl"
    fw.configure(log, run_id="r")
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"\x00weights" * 1000)
    folder = tmp_path / "checkpoint-20"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"tensors")
    (folder / "sub" / "config.json").write_text("{}")

    single = fw.log_checkpoint(weights, 10)
    whole = fw.log_checkpoint(folder, 20)

    file_event, folder_event = read_events(log)
    expected = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert single.sha256 == expected
    assert file_event["event.action"] == "checkpoint-saved" and file_event["event.outcome"] == "success"
    assert file_event["ml.checkpoint.sha256"] == expected
    assert file_event["ml.checkpoint.step"] == 10
    assert file_event["ml.checkpoint.path"] == str(weights)
    assert file_event["ml.checkpoint.size_bytes"] == 8000
    # A folder: the sha256 of `sha256sum`'s manifest, sorted by relative path.
    manifest = "".join(
        f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}\n"
        for name in ("model.safetensors", "sub/config.json")
    )
    assert folder_event["ml.checkpoint.sha256"] == hashlib.sha256(manifest.encode()).hexdigest() == whole.sha256
    assert folder_event["ml.checkpoint.files"] == ["model.safetensors", "sub/config.json"]
    assert folder_event["ml.checkpoint.size_bytes"] == len(b"tensors") + 2


def test_a_checkpoint_that_cannot_be_read_is_an_error_event_not_an_exception(fw, tmp_path, read_events):
    log = tmp_path / "job.jsonl"
    fw.configure(log)
    assert fw.log_checkpoint(tmp_path / "missing", 5) is None
    (event,) = read_events(log)
    assert event["log.level"] == "error"
    assert event["event.action"] == "checkpoint-saved" and event["event.outcome"] == "failure"
    assert event["error.type"] == "FileNotFoundError"
    assert event["ml.checkpoint.step"] == 5


def test_a_checkpoint_hashed_in_the_background_is_logged_as_in_the_foreground(fw, tmp_path, read_events):
    log = tmp_path / "job.jsonl"
    fw.configure(log)
    folder = tmp_path / "checkpoint-30"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"w" * 70_000)
    later = fw.log_checkpoint_in_background(folder, 30, files=["model.safetensors"], **{"labels.kind": "periodic"})
    missing = fw.log_checkpoint_in_background(tmp_path / "checkpoint-40", 40)
    assert missing.done() and missing.result() is None   # cannot be opened: said at once
    assert fw.wait_for_checkpoints(timeout=60)
    found = later.result()
    saved, failed = sorted(read_events(log), key=lambda e: e["ml.checkpoint.step"])
    assert failed["event.outcome"] == "failure" and failed["error.type"] == "FileNotFoundError"
    assert saved["event.outcome"] == "success" and saved["labels.kind"] == "periodic"
    assert saved["ml.checkpoint.sha256"] == found.sha256 == fw.log_checkpoint(folder, 30, files=["model.safetensors"]).sha256
    assert saved["ml.checkpoint.size_bytes"] == 70_000 and saved["ml.checkpoint.files"] == ["model.safetensors"]


def test_a_checkpoint_deleted_after_it_was_opened_is_still_hashed_as_saved(tmp_path):
    """What lets the hash wait in the background: rotation may delete the folder meanwhile."""
    from faultwarden.model import checkpoint

    folder = tmp_path / "checkpoint-7"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"saved weights")
    expected = checkpoint.digest(folder)
    opened = checkpoint.open_checkpoint(folder)
    (folder / "model.safetensors").unlink()
    folder.rmdir()
    assert opened.digest() == expected


def test_background_hashing_is_off_with_logging(fw, tmp_path):
    fw.configure(tmp_path / "job.jsonl", level="off")
    assert fw.log_checkpoint_in_background(tmp_path / "anything", 1).result() is None
    assert not (tmp_path / "job.jsonl").exists()


def test_lines_are_what_ecs_logging_writes(fw):
    """The line formatter is a faster twin of ecs-logging's StructlogFormatter: same bytes."""
    from ecs_logging import StructlogFormatter

    def event():
        return {"event": "step 3 loss=nan \u00e9", "@timestamp": "2024-05-01T12:00:00.123Z",
                "ml": {"loss": float("nan"), "step": 3, "memory": {"rss_bytes": 10}},
                "labels": {"run_id": "r"}, "event.action": "train-step", "log": {"logger": "faultwarden.model"},
                "error": {"type": "ValueError"}, "tags": ["a", "b"], "ecs.version": "1.6.0", "odd": object}

    ours = fw._ecs_json(None, "warning", event())
    theirs = StructlogFormatter()(None, "warning", event())
    assert ours == theirs
    assert fw._ecs_json(None, "info", {"event": "x"}).startswith('{"@timestamp":"20')
    assert json.loads(fw._ecs_json(None, "info", {"event": "x"}))["log.level"] == "info"


def test_events_below_the_level_are_never_formatted(fw, tmp_path, monkeypatch, read_events):
    formatted = []
    real = fw._ecs_json

    def counting(logger, name, event_dict):
        formatted.append(event_dict.get("event"))
        return real(logger, name, event_dict)

    monkeypatch.setattr(fw, "_ecs_json", counting)
    log = tmp_path / "job.jsonl"
    fw.configure(log, level="warning")
    fw.log_step(1, loss=0.1, memory=True)
    fw.log_inference(3.0, 2)
    assert fw.log_checkpoint(tmp_path / "not-hashed", 1) is None
    fw.get_logger().info("dropped")
    assert formatted == []
    fw.get_logger().warning("kept")
    assert formatted == ["kept"]
    assert [e["message"] for e in read_events(log)] == ["kept"]


def test_level_off_writes_nothing_and_opens_no_file(fw, tmp_path):
    log = tmp_path / "job.jsonl"
    fw.configure(log, level="off")
    fw.log_step(1, loss=0.1)
    fw.get_logger().critical("not even this")
    assert not log.exists()
    with pytest.raises(ValueError, match="level 'loud'"):
        fw.configure(log, level="loud")


def test_uncaught_exception_is_one_error_event_then_the_usual_traceback(tmp_path, run_python, read_events):
    log = tmp_path / "job.jsonl"
    result = run_python(textwrap.dedent("""
        import json
        from faultwarden.model import logging as fw
        fw.configure(service="trainer")
        fw.configure(service="trainer")   # twice, as a job calling it in several places would
        fw.log_step(1, loss=0.5)
        def load(text):
            return json.loads(text)
        load("{not json")
    """), env={"FAULTWARDEN_LOG_PATH": str(log), "FAULTWARDEN_RUN_ID": "run-7"})

    assert result.returncode == 1
    assert "json.decoder.JSONDecodeError" in result.stderr  # the previous hook still printed it
    errors = [e for e in read_events(log) if e["log.level"] == "error"]
    assert len(errors) == 1
    (error,) = errors
    assert error["error.type"] == "json.decoder.JSONDecodeError"
    assert error["error.message"].startswith("Expecting property name enclosed in double quotes")
    assert "in load" in error["error.stack_trace"] and "Traceback" in error["error.stack_trace"]
    assert error["event.action"] == "uncaught-exception"
    assert error["message"].startswith("json.decoder.JSONDecodeError: Expecting property name")
    assert error["labels.run_id"] == "run-7" and error["service.name"] == "trainer"


def test_uncaught_exception_in_a_thread_names_the_thread(tmp_path, run_python, read_events):
    log = tmp_path / "job.jsonl"
    result = run_python(textwrap.dedent("""
        import threading
        from faultwarden.model import logging as fw
        fw.configure()
        def load():
            raise RuntimeError("data loader died")
        def stop():
            raise SystemExit(0)   # a normal way to end a thread: not an error
        for target, name in ((load, "loader"), (stop, "stopper")):
            t = threading.Thread(target=target, name=name)
            t.start()
            t.join()
    """), env={"FAULTWARDEN_LOG_PATH": str(log)})

    assert result.returncode == 0
    assert "data loader died" in result.stderr
    (error,) = read_events(log)
    assert error["error.type"] == "RuntimeError" and error["error.message"] == "data loader died"
    assert error["process.thread.name"] == "loader"


def test_keyboard_interrupt_is_a_warning(tmp_path, run_python, read_events):
    log = tmp_path / "job.jsonl"
    run_python("from faultwarden.model import logging as fw\nfw.configure()\nraise KeyboardInterrupt\n",
               env={"FAULTWARDEN_LOG_PATH": str(log)})
    (event,) = read_events(log)
    assert event["log.level"] == "warning" and event["error.type"] == "KeyboardInterrupt"


def test_a_hook_that_wraps_ours_and_a_second_configure_make_no_loop(fw, tmp_path, read_events, capsys):
    # torch.distributed.init_process_group wraps sys.excepthook like this (to prefix the rank).
    fw.configure(tmp_path / "a.jsonl")
    ours = sys.excepthook

    def wrapper(exc_type, value, tb):
        print("[rank0] wrapped", file=sys.stderr)
        ours(exc_type, value, tb)

    sys.excepthook = wrapper
    try:
        fw.configure(tmp_path / "b.jsonl")  # new arguments, hooks already in the chain
        assert sys.excepthook is wrapper
        try:
            raise OSError(28, "No space left on device")
        except OSError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        sys.excepthook = ours
    (event,) = read_events(tmp_path / "b.jsonl")
    assert event["error.type"] == "OSError" and "No space left" in event["error.message"]
    assert read_events(tmp_path / "a.jsonl") == []
    err = capsys.readouterr().err
    assert err.count("[rank0] wrapped") == 1 and err.count("OSError: [Errno 28] No space left on device") == 1


def test_reset_restores_the_previous_hooks(fw, tmp_path):
    before_sys, before_threading = sys.excepthook, threading.excepthook
    fw.configure(tmp_path / "job.jsonl")
    assert sys.excepthook is not before_sys and threading.excepthook is not before_threading
    fw.reset()
    assert sys.excepthook is before_sys and threading.excepthook is before_threading


def test_the_job_side_stays_light(run_python):
    result = run_python(textwrap.dedent("""
        import sys
        import faultwarden.model.logging, faultwarden.model.inference, faultwarden.model.checkpoint
        heavy = [m for m in ("torch", "transformers", "faultwarden.daemon", "faultwarden.detectors",
                             "psutil") if m in sys.modules]
        print(heavy)
    """))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
