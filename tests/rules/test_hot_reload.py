"""Hot reload in a real daemon: `faultwarden run --config F` (service mode, under a NOTIFY_SOCKET)
tails a log folder and notifies a real local webhook. Its rule folder is edited while it runs:
the new rule applies; a broken edit is logged with its file:line and the last good rules keep
firing; the fix applies. The state of a rule the edits did not touch survives every reload."""
from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from pathlib import Path

import yaml

_spec = importlib.util.spec_from_file_location("svc_harness", Path(__file__).parents[1] / "ops" / "svc_harness.py")
svc_harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(svc_harness)

TIMEOUT = 60.0


def rules(word: str) -> str:
    """A rule file: `marker` fires on lines holding `word` (one incident per log file); `ticks`,
    never edited, fires on the third TICK line, wherever they are."""
    return f"""\
rules:
  - id: marker
    fault: data_error
    severity: warning
    description: The test's marker word.
    advice: Nothing to do, it is a test.
    match: {{message: {{regex: '{word}'}}}}
    group_by: [log.file.path]
    actions: [notify]
  - id: ticks
    fault: error_rate
    severity: info
    threshold: {{agg: count, where: {{message: {{regex: 'TICK'}}}}, window: 1h, above: 2}}
    actions: [notify]
"""


BROKEN = rules("BETA").replace("    severity: warning\n", "    severity: loud\n")  # line 4


def replace(path: Path, text: str) -> None:
    """Write as editors do: a new file renamed over the old one (the watcher sees a new inode
    whatever the clock's resolution, so the edit cannot go unnoticed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Output:
    """The daemon's log (JSON lines on stderr, merged into stdout by the harness), as it comes."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for raw in stream:
            with self.cond:
                self.lines.append(raw.decode(errors="replace"))
                self.cond.notify_all()

    def records(self, event: str) -> list[dict]:
        out = []
        for line in self.lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event:
                out.append(record)
        return out

    def wait(self, event: str, count: int) -> dict:
        """The `count`-th log record of this event (1-based), waiting for it."""
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while len(self.records(event)) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"no {event!r} #{count} in the daemon's log:\n{''.join(self.lines)}"
                self.cond.wait(left)
            return self.records(event)[count - 1]


def test_edit_break_and_fix_a_rule_while_the_daemon_runs(tmp_path, webhook):
    logs, rule_dir = tmp_path / "logs", tmp_path / "rules"
    logs.mkdir()
    rule_dir.mkdir()
    rule_file = rule_dir / "mine.yaml"
    rule_file.write_text(rules("ALPHA"))
    config = tmp_path / "faultwarden.yaml"
    config.write_text(yaml.safe_dump({
        "sources": [{"paths": [str(logs / "*.log")], "run_id": "reload-run"}],
        "detectors": {"rules": [str(rule_dir)]},
        "notify": {"webhooks": [{"url": webhook.url, "min_severity": "info"}]},
        "state_dir": str(tmp_path / "state"),
    }))

    def notified(rule: str, log_name: str) -> dict:
        try:
            return webhook.wait_for(lambda b: b.get("rule") == rule and b["source"]["path"].endswith(log_name),
                                    timeout=TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nthe daemon's log:\n{''.join(output.lines)}") from None

    daemon = svc_harness.Daemon(tmp_path, config)
    output = Output(daemon.proc.stdout)
    try:
        daemon.wait_message("READY=1")
        # The first rules: ALPHA is the marker. Two TICKs: not yet enough for `ticks`.
        (logs / "1.log").write_text("TICK 1\nTICK 2\nALPHA in the first file\n")
        first = notified("marker", "1.log")
        assert (first["fault"], first["source"]["line"], first["event"]) == ("data_error", 3, "opened")
        assert "ALPHA" in first["message"]

        # Edit: the marker becomes BETA. On the new rules, ALPHA (line 1) stays quiet.
        replace(rule_file, rules("BETA"))
        assert output.wait("rules reloaded", 1)["rules"] > 2  # the default pack and ours
        (logs / "2.log").write_text("ALPHA in the second file\nBETA in the second file\n")
        second = notified("marker", "2.log")
        assert second["source"]["line"] == 2 and "BETA" in second["message"]
        # `ticks` was not edited: its window kept the two TICKs across the reload.
        (logs / "2b.log").write_text("TICK 3\n")
        ticks = notified("ticks", "1.log")  # placed at the window's oldest event: TICK 1
        assert ticks["fault"] == "error_rate" and ticks["source"]["line"] == 1
        assert "3" in ticks["message"]  # the count of 3 TICKs over 1h

        # Break it: the daemon says where, and keeps running the BETA rules.
        replace(rule_file, BROKEN)
        refused = output.wait("rule files not reloaded; the last good rules keep running", 1)
        assert refused["error"].startswith(f"{rule_file}:4: rules[0].severity: Input should be")
        assert "'loud'" in refused["error"] and refused["level"] == "error"
        (logs / "3.log").write_text("ALPHA in the third file\nBETA in the third file\n")
        third = notified("marker", "3.log")
        assert third["source"]["line"] == 2 and "BETA" in third["message"]

        # Fix it (the marker is now GAMMA): the new rules apply.
        replace(rule_file, rules("GAMMA"))
        output.wait("rules reloaded", 2)
        (logs / "4.log").write_text("BETA in the fourth file\nGAMMA in the fourth file\n")
        fourth = notified("marker", "4.log")
        assert fourth["source"]["line"] == 2 and "GAMMA" in fourth["message"]
        assert daemon.proc.poll() is None
    finally:
        code = daemon.stop()
        output.thread.join(TIMEOUT)
    assert code == 0
    assert len(output.records("rule files not reloaded; the last good rules keep running")) == 1  # said once
    markers = [b for b in webhook.received if b.get("rule") == "marker"]
    assert sorted(Path(b["source"]["path"]).name for b in markers) == ["1.log", "2.log", "3.log", "4.log"]
