"""Text lines (time / level / logger headers, glog), HF Trainer dict lines, tqdm bars."""
from __future__ import annotations

import logging
import math
import subprocess
import sys
import time
from datetime import datetime

import pytest

from .helpers import NOW, one, run

LOCAL_NOON = datetime(2024, 5, 1, 12, 0, 0).timestamp()


def test_python_logging_classic_format():
    event = one("2024-05-01 12:00:00,123 - trainer - ERROR - CUDA out of memory")
    assert event["@timestamp"] == pytest.approx(LOCAL_NOON + 0.123)
    assert event["log.level"] == "error"
    assert event["log.logger"] == "trainer"
    assert event["message"] == "CUDA out of memory"


def test_a_real_logging_handler_output_round_trips():
    # The format string is logging's classic one; the record comes from the logging module.
    formatter = logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    record = logging.LogRecord("data.loader", logging.WARNING, __file__, 1, "slow batch %d", (7,), None)
    event = one(formatter.format(record))
    assert event["log.level"] == "warning" and event["log.logger"] == "data.loader"
    assert event["message"] == "slow batch 7"
    assert event["@timestamp"] == pytest.approx(record.created, abs=0.001)


@pytest.mark.parametrize("line, level, message, stamp", [
    ("[2024-05-01T12:00:00Z] WARNING disk almost full", "warning", "disk almost full", 1714564800.0),
    ("2024-05-01T12:00:00.5+00:00 [error] boom", "error", "boom", 1714564800.5),
    ("INFO:root:starting epoch 1", "info", "starting epoch 1", NOW),
    ("WARN something odd", "warning", "something odd", NOW),
    ("[FATAL] giving up", "critical", "giving up", NOW),
    ("CRITICAL: node lost", "critical", "node lost", NOW),
    ("ERR: short form", "error", "short form", NOW),
    ("Error: file not found", "error", "file not found", NOW),
])
def test_levels_are_normalised(line, level, message, stamp):
    event = one(line)
    assert (event["log.level"], event["message"], event["@timestamp"]) == (level, message, stamp)


def test_other_common_headers():
    hf_example = one("05/01/2024 12:00:00 - WARNING - transformers.trainer - no eval dataset")
    assert (hf_example["log.level"], hf_example["log.logger"]) == ("warning", "transformers.trainer")
    assert hf_example["@timestamp"] == LOCAL_NOON and hf_example["message"] == "no eval dataset"
    explicit = one("[INFO|trainer.py:2048] 2024-05-01 12:00:00,123 >> ***** Running training *****")
    assert explicit["log.level"] == "info" and explicit["log.logger"] == "trainer.py:2048"
    assert explicit["message"] == "***** Running training *****"
    hydra = one("[2024-05-01 12:00:00,123][trainer][INFO] - epoch 3")
    assert (hydra["log.logger"], hydra["log.level"], hydra["message"]) == ("trainer", "info", "epoch 3")
    loguru = one("2024-05-01 12:00:00.123 | DEBUG    | __main__:main:12 - ready")
    assert loguru["log.level"] == "debug" and loguru["message"] == "__main__:main:12 - ready"


def test_glog_lines():
    now = datetime(2024, 6, 1).timestamp()
    event = one("E0501 12:00:00.250000  4242 ProcessGroupNCCL.cpp:1168] Watchdog caught collective "
                "operation timeout", now=now)
    assert event["log.level"] == "error"
    assert event["@timestamp"] == pytest.approx(LOCAL_NOON + 0.25)
    assert event["process.pid"] == 4242
    assert event["log.origin.file.name"] == "ProcessGroupNCCL.cpp"
    assert event["log.origin.file.line"] == 1168
    assert event["message"].startswith("Watchdog caught")
    no_time = one("[W socket.cpp:663] [c10d] The client socket has failed to connect")
    assert no_time["log.level"] == "warning" and no_time["message"].startswith("[c10d]")


def test_glog_year_is_taken_from_now_and_never_in_the_future():
    january = datetime(2025, 1, 2).timestamp()
    event = one("I1231 23:59:59.000000 1 x.cc:1] last step", now=january)
    assert event["@timestamp"] == datetime(2024, 12, 31, 23, 59, 59).timestamp()


def test_plain_line_and_lowercase_words_are_not_levels():
    event = one("error rate was low today")
    assert event["message"] == "error rate was low today"
    assert "log.level" not in event and event["@timestamp"] == NOW


def test_hf_trainer_dict_line():
    line = "{'loss': 0.4123, 'grad_norm': 1.23, 'learning_rate': 2e-05, 'epoch': 0.5}"
    event = one(line)
    assert event["message"] == line
    assert event["ml.loss"] == 0.4123 and event["ml.grad_norm"] == 1.23
    assert event["ml.learning_rate"] == 2e-05 and event["ml.epoch"] == 0.5


def test_hf_trainer_nan_inf_and_numpy_reprs():
    event = one("{'loss': nan, 'grad_norm': inf, 'learning_rate': -inf, 'epoch': np.float64(1.5), "
                "'eval_loss': tensor(0.25, device='cuda:0')}")
    assert math.isnan(event["ml.loss"])
    assert event["ml.grad_norm"] == math.inf and event["ml.learning_rate"] == -math.inf
    assert event["ml.epoch"] == 1.5 and event["ml.eval_loss"] == 0.25


def test_dict_line_printed_by_a_real_python_process():
    out = subprocess.run(
        [sys.executable, "-c", "print({'loss': float('nan'), 'grad_norm': float('inf'), 'epoch': 0.5, "
                               "'train_runtime': 12.5, 'note': 'it\\'s'})"],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    event = one(out)
    assert math.isnan(event["ml.loss"]) and event["ml.grad_norm"] == math.inf
    assert event["ml.train_runtime"] == 12.5 and event["labels.note"] == "it's"


def test_dict_literal_is_never_evaluated():
    line = "{'loss': __import__('os').system('touch /tmp/pwned-by-parser')}"
    event = one(line)
    assert event["tags"] == ["parse_error"] and event["message"] == line
    assert "not a Python literal" in event["error.message"]
    broken = one("{'loss': 0.4,")
    assert broken["tags"] == ["parse_error"] and "never closed" in broken["error.message"]


def test_tqdm_bar_last_carriage_return_segment_counts():
    line = (" 10%|█         | 100/1000 [00:02<00:18, 49.9it/s]\r"
            " 45%|████▌     | 450/1000 [00:10<00:12, 44.1it/s]")
    event = one(line)
    assert event["ml.step"] == 450
    assert event["ml.steps_per_s"] == pytest.approx(44.1)
    assert event["ml.progress.total"] == 1000 and event["ml.progress.percent"] == 45
    assert event["tags"] == ["progress"]
    assert event["message"].startswith("45%|")


def test_tqdm_slow_bar_postfix_and_epoch():
    slow = one("  3%|▎         | 30/1000 [00:13<07:05,  2.50s/it]")
    assert slow["ml.steps_per_s"] == pytest.approx(0.4)
    lightning = one("Epoch 2:  45%|████▌     | 450/1000 [00:10<00:12, 44.10it/s, loss=0.123, v_num=0]")
    assert lightning["ml.epoch"] == 2 and lightning["ml.loss"] == 0.123
    unknown_rate = one("  0%|          | 0/1000 [00:00<?, ?it/s]")
    assert unknown_rate["ml.step"] == 0 and "ml.steps_per_s" not in unknown_rate


def test_real_tqdm_output_written_to_a_file(tmp_path):
    tqdm = pytest.importorskip("tqdm")
    log = tmp_path / "bar.log"
    with open(log, "w") as f:
        for _ in tqdm.tqdm(range(20), file=f, mininterval=0, miniters=1, ascii=False):
            pass
    raw = log.read_bytes()
    assert b"\r" in raw
    events = run(raw.split(b"\n"))
    assert events[-1]["ml.step"] == 20 and events[-1]["ml.progress.percent"] == 100


def test_blank_lines_make_no_event():
    assert run(["", "   ", "\t"]) == []


def test_clock_default_now():
    before = time.time()
    assert one("x", now=before)["@timestamp"] == before


def test_nccl_and_python_warning_lines_get_a_level_and_keep_their_text():
    nccl = one("gpu01:4242:4300 [3] NCCL WARN Call to ibv_reg_mr failed")
    assert nccl["log.level"] == "warning" and nccl["process.pid"] == 4242
    assert nccl["labels.cuda_device"] == "3"
    assert nccl["message"] == "gpu01:4242:4300 [3] NCCL WARN Call to ibv_reg_mr failed"
    line = "/venv/lib/python3.11/site-packages/torch/utils/data.py:557: UserWarning: 8 workers"
    warning = one(line)
    assert warning["log.level"] == "warning" and warning["message"] == line
    assert warning["log.origin.file.line"] == 557


def test_byte_order_mark_does_not_hide_a_json_line():
    event = one("\ufeff" + '{"msg": "first", "loss": 1.0}')
    assert event["message"] == "first" and event["ml.loss"] == 1.0


def test_level_word_in_an_unknown_format_still_gives_the_level():
    line = "081109 203615 148 WARN dfs.DataNode$PacketResponder: PacketResponder 1 terminating"
    event = one(line)
    assert event["log.level"] == "warning" and event["message"] == line
    assert "log.level" not in one("loading weights from ./INFO.bin and ./ERRORS.txt")
