"""Helpers shared by the shipping tests."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

import yaml


def wait_for(condition, timeout: float = 30.0, what: str = "condition", interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def training_events(n: int, path: str = "/logs/train.log", run_id: str = "r1", start: float = 1_767_225_600.0):
    """n training-step events as the parser gives them (flat dotted names, epoch seconds),
    with byte offsets 100 apart; every 7th has a NaN loss."""
    return [{
        "@timestamp": start + i, "event.ingested": start + i + 0.5, "message": f"step {i}",
        "log.level": "info", "log.file.path": path, "log.file.line": i + 1, "log.offset": 100 * i,
        "host.name": "gpu-node-1", "service.name": "trainer", "labels.run_id": run_id,
        "ml.step": i, "ml.loss": float("nan") if i % 7 == 3 else 2.0 / (i + 1),
    } for i in range(n)]


def ship(sink, events, file_id="file-1"):
    for ev in events:
        assert sink.submit(ev, file_id, ev["log.offset"] + 100)


# --- the daemon in service mode, as systemd runs it -----------------------------------------

FAULTWARDEN = [sys.executable, "-m", "faultwarden.daemon.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the caller's FAULTWARDEN_ES_* overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTWARDEN_ES_")}
    return {**env, **extra}


def service_config(tmp_path: Path, url: str, prefix: str, **extra) -> tuple[Path, Path]:
    """A config that tails `<tmp>/logs/*.log` and ships to `url`; returns (config, logs dir)."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    es = {"hosts": [url], "index_prefix": prefix, "flush_interval_s": 0.2, **extra.pop("elasticsearch", {})}
    data = {"sources": [{"paths": [str(logs / "*.log")], "run_id": "r1", "service": "trainer"}],
            "state_dir": str(tmp_path / "state"), "elasticsearch": es, "logging": {"format": "json"}, **extra}
    path = tmp_path / "faultwarden.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, logs


class Service:
    """`faultwarden run --config F`: the real daemon process; its output goes to `out`."""

    def __init__(self, config: Path, out: Path, env: dict[str, str] | None = None):
        self.out_path = out
        with open(out, "ab") as fh:
            self.proc = subprocess.Popen([*FAULTWARDEN, "run", "--config", str(config)], stdout=fh,
                                         stderr=subprocess.STDOUT, env=env or clean_env())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(60)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.kill()  # never leave a daemon behind
            raise AssertionError(f"the daemon did not stop within 90 s of SIGTERM:\n{self.output()[-3000:]}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")


def json_lines(start: int, n: int, nan_at: Iterable[int] = ()) -> str:
    """Training-step lines as a job writes them, one event each."""
    nan = set(nan_at)
    return "".join(
        json.dumps({"time": 1_767_225_600 + i * 0.25, "level": "info", "msg": "train step", "step": i,
                    "loss": "NaN" if i in nan else round(2.0 / (i + 1), 6)}).replace('"NaN"', "NaN") + "\n"
        for i in range(start, start + n))


def line_offsets(path: Path) -> list[int]:
    offsets, pos = [], 0
    with open(path, "rb") as fh:
        for line in fh:
            offsets.append(pos)
            pos += len(line)
    return offsets


def count(client, prefix: str, refresh: bool = False) -> int:
    """Event documents stored (0 while the first index is still being created)."""
    from elasticsearch import ApiError

    index = f"{prefix}-events-*"
    try:
        if refresh:
            client.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
        return client.count(index=index, ignore_unavailable=True, allow_no_indices=True)["count"]
    except ApiError as exc:
        if exc.status_code == 503:  # the daemon just created the index; its shard is not up yet
            return 0
        raise


def stored(client, prefix: str) -> dict[str, tuple[str, int, str]]:
    """Every event document: _id -> (log.file.path, log.offset, host.name)."""
    from elasticsearch.helpers import scan

    client.indices.refresh(index=f"{prefix}-events-*")
    out = {}
    for hit in scan(client, index=f"{prefix}-events-*", size=5000,
                    query={"query": {"match_all": {}}, "_source": ["log.file.path", "log.offset", "host.name"]}):
        src = hit["_source"]
        out[hit["_id"]] = (src["log.file.path"], src["log.offset"], src["host.name"])
    return out


def registry_row(state_dir: Path, path: Path) -> tuple[str, int] | None:
    """The tailer's identity for `path` (what the daemon's document ids are made from) and its
    shipping cursor (bytes acknowledged by Elasticsearch), read from the daemon's registry as it
    runs (SQLite in WAL mode: a reader never blocks the writer). None before the file is known."""
    db_path = state_dir / "tail" / "tail.sqlite"
    if not db_path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(db_path, timeout=5)) as db:
            rows = db.execute("SELECT file_id, ship_offset FROM files WHERE path = ?", (str(path),)).fetchall()
    except sqlite3.OperationalError:  # the daemon is creating the file right now
        return None
    return rows[0] if rows else None
