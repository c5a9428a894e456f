"""Redaction: secrets replaced as events are parsed, for a source that asks for it."""
from __future__ import annotations

import json

from faultwarden.daemon.config import Source
from faultwarden.daemon.parse.parser import Parser

HF = "hf_" + "aB3" * 12
GH = "ghp_" + "x9Z" * 12
AWS = "AKIAABCDEFGHIJKLMNOP"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
SHA = "0123456789abcdef0123456789abcdef01234567"


def parse(lines: list[str], redact: dict | None) -> list[dict]:
    source = Source.model_validate({"paths": ["/logs/*.log"], **({"redact": redact} if redact is not None else {})})
    parser = Parser(source, host="gpu-1")
    out, offset = [], 0
    for n, line in enumerate(lines, 1):
        out += parser.feed(line + "\n", path="/logs/train.log", offset=offset, line_no=n, now=1.0)
        offset += len(line) + 1
    return out + parser.flush()


def test_known_token_shapes_are_replaced_in_every_string_field():
    events = parse([
        json.dumps({"message": f"push to hub with token {HF}", "labels": {"repo": f"https://bob:pw123@git.example.org/{GH}"}}),
        f"2024-05-01 12:00:00,000 - boto - INFO - key {AWS} and Authorization: Bearer {JWT}",
    ], redact={})
    assert events[0]["message"] == "push to hub with token [redacted]"
    assert events[0]["labels.repo"] == "https://[redacted]@git.example.org/[redacted]"
    assert AWS not in events[1]["message"] and JWT not in events[1]["message"]
    assert "Bearer [redacted]" in events[1]["message"] and "key [redacted]" in events[1]["message"]
    assert events[1]["log.level"] == "info"  # the rest of the parse is unchanged


def test_ordinary_text_hashes_and_numbers_are_left_alone():
    line = f"step 7 loss 0.25 checkpoint sha {SHA} at https://hub.example.org/models/x"
    (event,) = parse([line], redact={})
    assert event["message"] == line


def test_own_patterns_and_replacement_without_the_builtins():
    (event,) = parse([f"customer cust-123456 paid; token {HF}"],
                     redact={"secrets": False, "patterns": [r"cust-\d{6}"], "replacement": "***"})
    assert event["message"] == f"customer *** paid; token {HF}"


def test_multiline_records_and_unparsed_lines_are_redacted_too():
    events = parse([
        "Traceback (most recent call last):",
        f'  File "push.py", line 3, in <module> login("{HF}")',
        "RuntimeError: 401 Unauthorized",
        '{"message": "half a line with ' + HF,
    ], redact={})
    text = json.dumps(events)
    assert HF not in text and text.count("[redacted]") == 3  # message, stack trace, unparsed line
    assert any("parse_error" in e.get("tags", ()) for e in events)  # kept and counted, redacted


def test_without_redact_nothing_is_changed():
    (event,) = parse([f"token {HF}"], redact=None)
    assert event["message"] == f"token {HF}"
