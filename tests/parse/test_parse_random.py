"""Random input (hypothesis): random bytes, random text, random JSON and Python dict literals,
random sequences of traceback-ish lines. Nothing may raise, every event has the fields every
event has, nothing non-blank is dropped, and the job's numbers keep their value (NaN included).
"""
from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faultwarden.daemon.parse import Parser
from faultwarden.daemon.parse.fields import NUMERIC_ML

from .helpers import NOW, source

# derandomize: the same examples every run (a failure reproduces; no flaky CI). The counts keep
# the whole file near 10 s on a busy machine; raise them locally to search harder.
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEWER = settings(SETTINGS, max_examples=50)
PATH = "/logs/random.log"


def feed_all(lines, source=None) -> list[dict]:
    parser = Parser(source, host=None)
    events, offset = [], 0
    for number, line in enumerate(lines, 1):
        events += parser.feed(line, path=PATH, offset=offset, line_no=number, now=NOW)
        offset += len(line) + 1
    events += parser.flush()
    for event in events:
        assert_event(event, len(lines))
    return events


def assert_event(event: dict, lines: int) -> None:
    """The fields every event has (design: flat dotted ECS names, never dropped)."""
    assert type(event["message"]) is str
    assert type(event["@timestamp"]) is float and math.isfinite(event["@timestamp"])
    assert event["event.ingested"] == NOW
    assert event["log.file.path"] == PATH
    assert 1 <= event["log.file.line"] <= lines
    assert type(event["log.offset"]) is int and event["log.offset"] >= 0
    assert type(event["host.name"]) is str and event["host.name"]
    assert not any(type(v) is dict for v in event.values()), "not flat"
    if "log.level" in event:
        assert type(event["log.level"]) is str
    if "tags" in event:
        assert type(event["tags"]) is list and all(type(t) is str for t in event["tags"])
        if "parse_error" in event["tags"]:
            assert type(event["error.message"]) is str and event["error.message"]
    for key, value in event.items():
        assert type(key) is str and key
        if key in NUMERIC_ML:   # mapped long/double: a string or bool there fails the document
            assert type(value) in (int, float), (key, value)
            assert type(value) is float or -2 ** 63 <= value < 2 ** 63, (key, value)


# --- bytes and text ----------------------------------------------------------------------------

@SETTINGS
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=20))
def test_random_bytes_never_raise(lines):
    feed_all(lines)


@SETTINGS
@given(st.lists(st.text(max_size=300), min_size=1, max_size=20))
def test_random_text_never_raises(lines):
    feed_all(lines)


@SETTINGS
@given(st.lists(st.text(st.characters(codec=None), max_size=80), min_size=1, max_size=10),
       st.sampled_from(["auto", "json", "text"]))
def test_random_text_with_lone_surrogates_in_any_format_never_raises(lines, fmt):
    feed_all(lines, source(format=fmt))


@SETTINGS
@given(st.binary(min_size=1, max_size=200).filter(lambda b: b.strip()))
def test_one_random_bytes_line_is_one_event(raw):
    # Without any line end inside, a line on its own is one event, never none (not dropped).
    raw = raw.replace(b"\n", b" ").replace(b"\r", b" ")
    if not raw.strip() or not raw.decode("utf-8", "replace").strip():
        return
    events = feed_all([raw])
    assert len(events) == 1


# --- JSON --------------------------------------------------------------------------------------

ODD_KEYS = st.one_of(
    st.sampled_from(["loss", "step", "lr", "epoch", "grad_norm", "message", "msg", "level",
                     "levelname", "time", "timestamp", "@timestamp", "ts", "log", "log.level",
                     "error", "host", "service", "process", "pid", "event", "tags", "exc_info",
                     "labels", "ml", "ml.loss", "", ".", "..", "a.b", "a..b", "train/loss",
                     "eval loss", "ключ", "🔥", "\x00", "a\nb", "@", "event.ingested"]),
    st.text(max_size=12))
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2 ** 70), 2 ** 70),
    st.sampled_from([2 ** 63, -(2 ** 63) - 1, 2 ** 64, 10 ** 30, -(10 ** 400), 10 ** 1000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01 12:00:00,123", "1714564800",
                     "nan", "inf", "1e999", "WARN", "Traceback (most recent call last):\nX: y"]))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(ODD_KEYS, inner, max_size=5)),
    max_leaves=15)


@FEWER
@given(st.dictionaries(ODD_KEYS, JSON_VALUES, max_size=8))
def test_random_json_objects_are_events_not_errors(record):
    line = json.dumps(record)   # NaN and Infinity as Python writes them
    (event,) = feed_all([line])
    assert "parse_error" not in event.get("tags", ()), event.get("error.message")
    # The job's numbers keep their value, NaN and infinities included.
    for key, name in (("loss", "ml.loss"), ("grad_norm", "ml.grad_norm"), ("epoch", "ml.epoch")):
        value = record.get(key)
        if type(value) is float:
            assert event[name] == value or (math.isnan(value) and math.isnan(event[name]))


@FEWER
@given(JSON_VALUES.filter(lambda v: type(v) is not dict))
def test_random_json_that_is_not_an_object_is_kept_as_a_parse_error(value):
    line = json.dumps(value)
    (event,) = feed_all([line], source(format="json"))
    assert event["message"] == line
    assert "parse_error" in event["tags"]


@FEWER
@given(st.dictionaries(ODD_KEYS, JSON_VALUES, max_size=6), st.integers(1, 40))
def test_random_json_cut_short_is_a_parse_error_with_the_raw_line(record, cut):
    line = json.dumps(record)
    if len(line) <= 2:
        return
    broken = line[:max(1, len(line) - cut)]
    (event,) = feed_all([broken])
    assert event["message"] == broken
    assert event["tags"] == ["parse_error"]


@SETTINGS
@given(st.sampled_from(["loss", "time", "step", "x"]), st.integers(1, 6000), st.booleans())
def test_integers_of_any_length_are_numbers_not_errors(key, digits, literal):
    # Past 64 bits: a float (Elasticsearch's long holds no more); past 4300 digits Python's int()
    # refuses the text and past ~308 a float is infinite. A time that large is no time.
    number = "9" * digits
    line = f"{{'{key}': {number}}}" if literal else f'{{"{key}": {number}}}'
    (event,) = feed_all([line])
    assert "tags" not in event, event.get("error.message")
    if key == "loss":
        assert event["ml.loss"] == (int(number) if digits < 19 else float(number))
    if key == "time" and digits > 20:
        assert event["@timestamp"] == NOW


@SETTINGS
@given(st.integers(1, 3000), st.sampled_from(["[", "{\"a\": "]))
def test_deep_nesting_never_raises(depth, opener):
    closer = "]" if opener == "[" else "}"
    line = "{\"x\": " + opener * depth + "1" + closer * depth + "}"
    (event,) = feed_all([line])
    assert event["message"]


# --- Python dict literals (HF Trainer) ---------------------------------------------------------

LITERAL_KEYS = st.text(st.characters(blacklist_characters="'\\\n\r", codec="utf-8"), max_size=15)
LITERAL_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(LITERAL_KEYS, inner, max_size=3)),
    max_leaves=12)


@FEWER
@given(st.dictionaries(LITERAL_KEYS, LITERAL_VALUES, min_size=1, max_size=8))
def test_random_dict_literals_as_trainers_print_them(record):
    line = repr(record)   # what print(logs) writes
    (event,) = feed_all([line])
    assert "parse_error" not in event.get("tags", ()), (line, event.get("error.message"))
    assert event["message"] == line
    value = record.get("loss")
    if type(value) is float:
        assert event["ml.loss"] == value or (math.isnan(value) and math.isnan(event["ml.loss"]))


@SETTINGS
@given(st.dictionaries(st.sampled_from(["loss", "grad_norm", "learning_rate", "epoch", "step"]),
                       st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**6, 10**6),
                       min_size=1))
def test_flat_hf_dicts_map_every_number(record):
    (event,) = feed_all([repr(record)])
    names = {"loss": "ml.loss", "grad_norm": "ml.grad_norm", "learning_rate": "ml.learning_rate",
             "epoch": "ml.epoch", "step": "ml.step"}
    for key, value in record.items():
        got = event[names[key]]
        assert got == value or (math.isnan(value) and math.isnan(got)), (key, value, got)


# --- sequences: tracebacks among other lines ---------------------------------------------------

POOL = [
    "Traceback (most recent call last):",
    '  File "train.py", line 10, in <module>',
    "    main()",
    "RuntimeError: CUDA error: an illegal memory access was encountered",
    "KeyError: 'missing'",
    "",
    "   ",
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
    "  + Exception Group Traceback (most recent call last):",
    "  | ValueError: bad",
    "2024-05-01 12:00:00,123 - trainer - ERROR - step failed",
    "{'loss': nan, 'epoch': 0.5}",
    '{"message": "json", "level": "warning"}',
    "plain words",
    " 45%|████▌     | 450/1000 [00:10<00:12, 44.10it/s]",
    "\tindented with a tab",
]


@SETTINGS
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=60))
def test_random_sequences_cover_every_non_blank_line_exactly_once(lines):
    events = feed_all(lines)
    covered: list[int] = []
    for event in events:
        first = event["log.file.line"]
        covered += range(first, first + event["message"].count("\n") + 1)
    assert len(covered) == len(set(covered)), "a line in two events"
    wanted = {n for n, line in enumerate(lines, 1) if line.strip()}
    assert wanted <= set(covered), f"lines dropped: {sorted(wanted - set(covered))}"
    assert set(covered) <= set(range(1, len(lines) + 1))
