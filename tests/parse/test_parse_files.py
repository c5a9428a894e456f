"""read_file: plain and gzip files, offsets, the source's labels, replayed time, odd bytes."""
from __future__ import annotations

import gzip
import os
import socket

from faultwarden.daemon.parse import read_file

from .helpers import one, source

LINES = [
    '{"@timestamp": "2024-05-01T12:00:00.000Z", "message": "start", "step": 1}',
    "{'loss': 0.5, 'epoch': 0.1}",
    "Traceback (most recent call last):",
    '  File "train.py", line 1, in <module>',
    "RuntimeError: CUDA error: an illegal memory access was encountered",
    '{"@timestamp": "2024-05-01T12:00:05.000Z", "message": "restart"}',
    "tail without newline",
]
TEXT = ("\n".join(LINES)).encode()


def _offsets(data: bytes) -> list[int]:
    return [0] + [i + 1 for i, byte in enumerate(data) if byte == 0x0A]


def _check(events, data: bytes):
    offsets = _offsets(data)
    assert [e["log.file.line"] for e in events] == [1, 2, 3, 6, 7]
    for event in events:
        line_no, offset = event["log.file.line"], event["log.offset"]
        assert offset == offsets[line_no - 1]
        first_line = data[offset:].split(b"\n", 1)[0].decode()
        assert event["message"] in first_line or event["message"].startswith(first_line)
    assert events[2]["error.type"] == "RuntimeError"


def test_plain_file_offsets_and_lines(tmp_path):
    path = tmp_path / "train.log"
    path.write_bytes(TEXT)
    events = list(read_file(path))
    _check(events, TEXT)
    assert all(e["log.file.path"] == str(path) for e in events)
    assert all(e["host.name"] == socket.gethostname() for e in events)


def test_gzip_offsets_are_uncompressed_offsets(tmp_path):
    path = tmp_path / "train.log.1"  # gzip told by its bytes, not its name
    with gzip.open(path, "wb") as f:
        f.write(TEXT)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    events = list(read_file(path))
    _check(events, TEXT)
    plain = tmp_path / "plain.log"
    plain.write_bytes(TEXT)
    strip = lambda e: {k: v for k, v in e.items() if k not in ("log.file.path", "event.ingested")}
    assert [strip(e) for e in events] == [strip(e) for e in read_file(plain)]


def test_records_without_time_take_the_time_of_the_record_before(tmp_path):
    path = tmp_path / "train.log"
    path.write_bytes(TEXT)
    events = list(read_file(path))
    start, restart = 1714564800.0, 1714564805.0
    assert [e["@timestamp"] for e in events] == [start, start, start, restart, restart]
    assert all(e["event.ingested"] > restart for e in events)


def test_leading_untimed_records_take_the_first_time_in_the_file(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("loading model\n{'loss': 1.0}\n"
                    "2024-05-01T12:00:00Z INFO training\n")
    events = list(read_file(path))
    assert [e["@timestamp"] for e in events] == [1714564800.0] * 3


def test_file_without_any_time_is_dated_by_its_modification_time(tmp_path):
    path = tmp_path / "print.log"
    path.write_text("epoch 1\nepoch 2\n")
    os.utime(path, (1_600_000_000, 1_600_000_000))
    assert [e["@timestamp"] for e in read_file(path)] == [1_600_000_000.0] * 2


def test_source_labels_service_and_host(tmp_path):
    path = tmp_path / "train.log"
    path.write_text('{"message": "hi", "labels": {"run_id": "from-record", "team": "a"}, '
                    '"service": {"name": "record-service"}}\n')
    src = source(service="trainer", run_id="run-42", dataset="training",
                 labels={"cluster": "east", "team": "b"})
    event, = read_file(path, src, host="gpu-node-3")
    assert event["service.name"] == "trainer"
    assert event["labels.run_id"] == "run-42"
    assert event["labels.dataset"] == "training"
    assert event["labels.cluster"] == "east" and event["labels.team"] == "b"
    assert event["host.name"] == "gpu-node-3"


def test_environment_is_not_a_source_of_labels(monkeypatch):
    monkeypatch.setenv("FAULTWARDEN_RUN_ID", "from-env")
    event = one("hello")
    assert not any(v == "from-env" for v in event.values())
    assert "labels.run_id" not in event


def test_non_utf8_bytes_are_replaced_and_tagged(tmp_path):
    path = tmp_path / "bin.log"
    path.write_bytes(b"ok line\nbad \xff\xfe bytes\r\n2024-05-01 12:00:00 INFO caf\xc3\xa9\n")
    events = list(read_file(path))
    assert [e["message"] for e in events] == ["ok line", "bad \ufffd\ufffd bytes", "caf\u00e9"]
    assert [e.get("tags") for e in events] == [None, ["invalid_utf8"], None]
    assert [e["log.offset"] for e in events] == [0, 8, 22]


def test_text_already_decoded_with_replacement_is_tagged():
    from faultwarden.daemon.parse import Parser

    event, = Parser(host="h").feed("bad \ufffd byte", path="p", offset=0, line_no=1, now=1.0)
    assert event["tags"] == ["invalid_utf8"]
