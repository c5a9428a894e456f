"""Progress lines of trainers that did not write for faultwarden, logfmt and user formats."""
import math

import pytest

from faultwarden.daemon.parse.progress import UserFormat, logfmt, progress_fields


@pytest.mark.parametrize("line, expected", [
    ("iteration 29020/292968 | consumed samples: 1000 | elapsed time per iteration (ms): 1234.5 | "
     "learning rate: 1.5E-04 | global batch size: 512 | lm loss: 2.77E+00 | loss scale: 1.0 | grad norm: 0.31 |",
     {"ml.step": 29020, "ml.step_time_s": 1.2345, "ml.learning_rate": 1.5e-4, "ml.batch_size": 512,
      "ml.loss": 2.77, "ml.loss_scale": 1.0, "ml.grad_norm": 0.31}),
    ("iter 100: loss 4.5123, time 98.21ms, mfu 41.3%",
     {"ml.step": 100, "ml.loss": 4.5123, "ml.step_time_s": 0.09821}),
    ("eta: 0:10:00  iter: 19  total_loss: 1.2  loss_cls: 0.5  time: 0.4012  data_time: 0.0100  lr: 0.001",
     {"ml.step": 19, "ml.loss": 1.2, "ml.step_time_s": 0.4012, "ml.learning_rate": 0.001}),
    ("epoch 001 | loss 4.5 | ppl 22.6 | wps 12345 | ups 1.2 | num_updates 100 | lr 0.0005 | gnorm 1.2",
     {"ml.epoch": 1.0, "ml.loss": 4.5, "ml.tokens_per_s": 12345.0, "ml.steps_per_s": 1.2, "ml.step": 100,
      "ml.learning_rate": 0.0005, "ml.grad_norm": 1.2}),
    ("iter 7: loss nan, time 90.0ms", {"ml.step": 7, "ml.loss": math.nan, "ml.step_time_s": 0.09}),
], ids=["megatron", "nanogpt", "detectron2", "fairseq", "nan"])
def test_trainer_progress_lines(line, expected):
    got = progress_fields(line)
    assert set(got) >= set(expected)
    for key, value in expected.items():
        assert (math.isnan(got[key]) if isinstance(value, float) and math.isnan(value)
                else got[key] == pytest.approx(value)), key


def test_prose_with_one_number_is_not_progress():
    assert progress_fields("Saving model checkpoint to out/checkpoint-500") == {}
    assert progress_fields("Epoch 3: validation loss improved") == {}


def test_aliases_from_the_config_extend_the_table():
    assert progress_fields("it 5 | my loss: 0.25 | lr: 0.1", {"my loss": "ml.loss", "it": "ml.step"}) == \
        {"ml.step": 5, "ml.loss": 0.25, "ml.learning_rate": 0.1}


def test_logfmt():
    assert logfmt('time=2024-05-01T12:00:00Z level=warn msg="loss went up" step=10 loss=0.5') == \
        {"time": "2024-05-01T12:00:00Z", "level": "warn", "msg": "loss went up", "step": 10, "loss": 0.5}
    assert logfmt("a=b but mostly prose here and there") is None


def test_user_format_with_named_groups():
    hdfs = UserFormat(r"(?P<date>\d{6}) (?P<time>\d{6}) (?P<labels__pid>\d+) (?P<level>\w+) (?P<log__logger>[\w.$]+): (?P<message>.*)")
    assert hdfs.record("081109 203615 148 INFO dfs.DataNode$PacketResponder: Received block blk_-16") == {
        "date": "081109", "time": "203615", "labels.pid": "148", "level": "INFO",
        "log.logger": "dfs.DataNode$PacketResponder", "message": "Received block blk_-16"}


def test_the_parser_reads_them_per_source():
    from faultwarden.daemon.config import Source
    from faultwarden.daemon.parse import Parser

    def one(parser, line):
        (event,) = parser.feed(line, path="x.log", offset=0, line_no=1, now=0.0)
        return event

    plain = Parser(Source(paths=["x.log"]))
    megatron = one(plain, " iteration      100/  292968 | lm loss: 2.770E+00 | grad norm: 0.310 | loss scale: 1.0 |")
    assert megatron["ml.step"] == 100 and megatron["ml.loss"] == 2.77 and megatron["ml.grad_norm"] == 0.31
    lf = one(plain, 'level=error msg="NCCL timeout" step=7 loss=0.5')
    assert lf["log.level"] == "error" and lf["message"] == "NCCL timeout" and lf["ml.step"] == 7
    own = Parser(Source(paths=["x.log"], pattern=r"(?P<level>\w+) blk=(?P<labels__block>\S+) (?P<message>.*)",
                        aliases={"my loss": "ml.loss"}))
    hdfs = one(own, "WARN blk=blk_-42 Slow BlockReceiver write")
    assert hdfs["log.level"] == "warning" and hdfs["labels.block"] == "blk_-42"
    assert hdfs["message"] == "Slow BlockReceiver write"
    assert one(own, "it 3 | my loss: 0.25 | lr: 0.1 plain")["ml.loss"] == 0.25
