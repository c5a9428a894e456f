"""JSON lines: ECS from the real ecs-logging formatter, ad-hoc ML JSON, NaN/Infinity, broken lines."""
from __future__ import annotations

import io
import json
import logging
import math
from datetime import datetime, timezone

import ecs_logging
import structlog

from .helpers import NOW, one, run, source


def _ecs_line(**extra) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ecs_logging.StdlibFormatter())
    log = logging.Logger("trainer")
    log.addHandler(handler)
    log.warning("step done", extra=extra)
    return stream.getvalue().strip()


def test_ecs_line_from_ecs_logging_is_flattened():
    line = _ecs_line(**{"ml.loss": 0.25, "ml.step": 40, "labels.run_id": "r7"})
    event = one(line)
    raw = json.loads(line)
    assert event["message"] == "step done"
    assert event["log.level"] == "warning"
    assert event["log.logger"] == "trainer"
    assert event["process.pid"] == raw["process"]["pid"]
    assert event["ecs.version"] == raw["ecs.version"]
    assert event["ml.loss"] == 0.25 and event["ml.step"] == 40
    assert event["labels.run_id"] == "r7"
    stamp = datetime.strptime(raw["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert event["@timestamp"] == stamp.timestamp()
    assert event["event.ingested"] == NOW
    assert not any(isinstance(v, dict) for v in event.values())


def test_ecs_exception_keeps_type_message_and_stack():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ecs_logging.StdlibFormatter())
    log = logging.Logger("trainer")
    log.addHandler(handler)
    try:
        raise RuntimeError("CUDA error: device-side assert triggered")
    except RuntimeError:
        log.exception("step failed")
    event = one(stream.getvalue().strip())
    assert event["error.type"] == "RuntimeError"
    assert event["error.message"] == "CUDA error: device-side assert triggered"
    assert "test_ecs_exception_keeps_type_message_and_stack" in event["error.stack_trace"]
    assert event["log.level"] == "error"


def test_structlog_json_renderer_line():
    stream = io.StringIO()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.JSONRenderer()])
    logger.info("epoch end", loss=0.5, epoch=2)
    event = one(stream.getvalue().strip())
    assert event["message"] == "epoch end"  # structlog's `event` key
    assert event["log.level"] == "info"
    assert event["ml.loss"] == 0.5 and event["ml.epoch"] == 2
    assert abs(event["@timestamp"] - datetime.now(timezone.utc).timestamp()) < 3600


def test_generic_ml_keys_map_to_design_names():
    event = one(json.dumps({
        "loss": 1.5, "global_step": 12, "epoch": 0.25, "lr": 3e-4, "grad_norm": 0.9,
        "loss_scale": 65536.0, "step_time": 0.31, "train_samples_per_second": 120.5,
        "tokens_per_second": 9000, "latency_ms": 42.0, "batch_size": 32, "rank": 3,
        "world_size": 8, "levelname": "WARN", "msg": "slow step", "ts": 1714564800.5}))
    assert event["ml.loss"] == 1.5
    assert event["ml.step"] == 12
    assert event["ml.epoch"] == 0.25
    assert event["ml.learning_rate"] == 3e-4
    assert event["ml.grad_norm"] == 0.9
    assert event["ml.loss_scale"] == 65536.0
    assert event["ml.step_time_s"] == 0.31
    assert event["ml.samples_per_s"] == 120.5
    assert event["ml.tokens_per_s"] == 9000
    assert event["ml.latency_ms"] == 42.0
    assert event["ml.batch_size"] == 32
    assert event["ml.rank"] == 3 and event["ml.world_size"] == 8
    assert event["log.level"] == "warning"
    assert event["message"] == "slow step"
    assert event["@timestamp"] == 1714564800.5


def test_unknown_keys_numbers_under_ml_strings_under_labels():
    event = one(json.dumps({"eval_loss": 0.7, "model": "gpt2", "train/acc": 0.9,
                            "extra": {"n": 2, "who": "me"}, "devices": ["cuda:0", "cuda:1"],
                            "shape": [2, 3], "source": "loader", "nothing": None}))
    assert event["ml.eval_loss"] == 0.7
    assert event["labels.model"] == "gpt2"
    assert event["ml.train_acc"] == 0.9
    assert event["ml.extra.n"] == 2 and event["labels.extra.who"] == "me"
    assert event["labels.devices"] == ["cuda:0", "cuda:1"]
    assert event["labels.shape"] == "[2,3]"
    assert event["labels.source"] == "loader"  # `source` is an ECS object: a string can't go there
    assert "labels.nothing" not in event and "ml.nothing" not in event
    assert event["message"].startswith('{"eval_loss"')  # no message key: the line itself


def test_scalars_where_ecs_has_objects():
    event = one(json.dumps({"message": "m", "error": "boom", "host": "gpu7", "process": 99,
                            "service": "trainer", "logger": "a.b"}), host=None)
    assert event["error.message"] == "boom"
    assert event["host.name"] == "gpu7"  # the record's own host wins over this machine's name
    assert event["process.pid"] == 99
    assert event["service.name"] == "trainer"
    assert event["log.logger"] == "a.b"


def test_timestamps_iso_offset_and_epoch_units():
    base = 1714564800.0
    assert one('{"time": "2024-05-01T14:00:00+02:00"}')["@timestamp"] == base
    assert one('{"timestamp": "2024-05-01T12:00:00.250000Z"}')["@timestamp"] == base + 0.25
    assert one('{"ts": 1714564800250}')["@timestamp"] == base + 0.25
    assert one('{"ts": 1714564800250000000}')["@timestamp"] == base + 0.25
    naive = datetime(2024, 5, 1, 12, 0, 0).timestamp()  # no zone: local time
    assert one('{"time": "2024-05-01 12:00:00,5"}')["@timestamp"] == naive + 0.5
    unreadable = one('{"time": "yesterday", "message": "x"}')
    assert unreadable["@timestamp"] == NOW and unreadable["labels.time"] == "yesterday"


def test_nan_and_infinity_tokens_parse_as_floats():
    line = json.dumps({"loss": float("nan"), "grad_norm": float("inf"), "lr": -math.inf, "step": 5})
    assert "NaN" in line and "Infinity" in line
    event = one(line)
    assert math.isnan(event["ml.loss"])
    assert event["ml.grad_norm"] == math.inf and event["ml.learning_rate"] == -math.inf
    assert event["ml.step"] == 5
    assert "tags" not in event


def test_numeric_strings_of_ml_keys_become_numbers():
    event = one('{"loss": "nan", "step": "12", "epoch": "first"}')
    assert math.isnan(event["ml.loss"]) and event["ml.step"] == 12.0
    assert event["labels.epoch"] == "first"


def test_broken_json_is_kept_and_tagged():
    line = '{"loss": 0.4, "step"'
    event = one(line)
    assert event["message"] == line
    assert event["tags"] == ["parse_error"]
    assert "not valid JSON" in event["error.message"] and "column" in event["error.message"]
    assert event["log.file.line"] == 1 and event["log.offset"] == 0


def test_json_format_forces_json_and_text_format_never():
    as_json = run(["plain words", "[1, 2]", '{"msg": "ok"}'], source=source(format="json"))
    assert [e.get("tags") for e in as_json] == [["parse_error"], ["parse_error"], None]
    assert as_json[1]["error.message"] == "expected a JSON object, got list"
    as_text = one('{"msg": "ok"}', source=source(format="text"))
    assert as_text["message"] == '{"msg": "ok"}' and "tags" not in as_text


def test_record_tags_are_kept_alongside_ours():
    event = one(b'{"message": "x", "tags": ["mine"], "note": "\xff"}')
    assert event["tags"] == ["mine", "invalid_utf8"]
    assert event["labels.note"] == "\ufffd"
