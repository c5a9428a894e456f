"""The journald source on real journal files: fields, filters, cursors, the default rules."""
from __future__ import annotations

import json
import math

import pytest

from faultwarden.daemon.config import Source
from faultwarden.daemon.journald import JournaldError, JournaldReader, command, source_key

from .helpers import NAN_STEP, OOM, XID, collect, kernel, require_journalctl, unit_line


@pytest.fixture(autouse=True)
def _journalctl():
    require_journalctl()


def source(journal, **journald) -> Source:
    return Source(journald={"files": [str(journal.path)], **journald}, labels={"cluster": "a100"})


def read_all(journal, state_dir, count, **journald):
    with JournaldReader(source(journal, **journald), state_dir) as reader:
        return collect(reader, count)


def test_entries_become_events_with_the_journals_fields(journal, tmp_path):
    journal.append(
        kernel(XID, priority=4),
        kernel(OOM),
        unit_line("trainer.service", NAN_STEP),
        unit_line("trainer.service", "2024-05-01 12:00:03,123 - trainer - ERROR - data shard 7 missing"),
        kernel(b"EDAC MC0: 1 CE memory read error \xff on DIMM_A1", priority=5),
    )
    got = read_all(journal, tmp_path / "state", 5)
    events = [e for e, _ in got]
    xid, oom, step, text, binary = events

    assert xid["message"] == XID
    assert xid["log.logger"] == "kernel"
    assert xid["log.level"] == "warning"  # PRIORITY 4: the kernel's word is the journal's
    assert xid["labels.gpu_xid"] == "79"
    assert xid["host.name"] == "gpu-node-1"
    assert xid["@timestamp"] == pytest.approx(1_714_564_801.0)
    assert xid["log.file.path"] == f"journald:{journal.path}"
    assert xid["labels.cluster"] == "a100"
    assert isinstance(xid["event.ingested"], float)
    assert oom["log.level"] == "error" and oom["message"] == OOM

    # A unit's JSON line: its numbers parsed, NaN kept; the journal's time, host and pid win.
    assert math.isnan(step["ml.loss"]) and step["ml.step"] == 120
    assert step["ml.learning_rate"] == pytest.approx(2e-4)
    assert step["message"] == "train step"
    assert step["log.logger"] == "trainer"
    assert step["service.name"] == "trainer.service"
    assert step["process.pid"] == 4242 and step["process.name"] == "python3"
    assert step["@timestamp"] == pytest.approx(1_714_564_803.0)
    assert step["log.level"] == "info"

    # On stdout PRIORITY is just the stream's default: the level the line states wins.
    assert text["log.level"] == "error"
    assert text["message"] == "data shard 7 missing"
    assert text["@timestamp"] == pytest.approx(1_714_564_804.0)

    # A message that is not UTF-8 comes as a list of byte values in journalctl's JSON.
    assert binary["message"].startswith("EDAC MC0: 1 CE memory read error \ufffd on DIMM_A1")
    assert "invalid_utf8" in binary["tags"]
    assert binary["log.level"] == "info"

    # Positions: the journal's sequence numbers as offsets (the sink's document ids), its cursors.
    offsets = [e["log.offset"] for e in events]
    assert offsets == sorted(offsets) and len(set(offsets)) == 5
    positions = [p for _, p in got]
    ends = [p.end for p in positions]
    assert ends == sorted(ends) and len(set(ends)) == 5
    assert all(p.detect and p.cursor.startswith("s=") for p in positions)
    assert all(e["labels.journal_cursor"] == p.cursor for e, p in got)
    assert len({p.file_id for p in positions}) == 1


def test_resumes_after_the_acknowledged_cursor(journal, tmp_path):
    state = tmp_path / "state"
    journal.append(*[unit_line("trainer.service", f"line {i}") for i in range(1, 5)])
    with JournaldReader(source(journal), state) as reader:
        first = collect(reader, 4)
        reader.acked(first[1][1])  # lines 1-2 shipped; 3-4 read (detected) only
        cursor_file = next(state.glob("journald-*.cursor"))
        assert json.loads(cursor_file.read_text())["shipped"] == first[1][1].cursor
        reader.read()  # the caller is done with the lines: they count as read
    journal.append(*[unit_line("trainer.service", f"line {i}") for i in range(5, 7)])

    with JournaldReader(source(journal), state) as reader:
        again = collect(reader, 4)
        assert [e["message"] for e, _ in again] == ["line 3", "line 4", "line 5", "line 6"]
        # 3 and 4 come again for shipping, but the detectors saw them already.
        assert [p.detect for _, p in again] == [False, False, True, True]
        reader.shipped(again[-1][1].file_id, again[-1][1].end)  # as the sink calls back
        reader.shipped("journald-someoneelse:x", 10**9)  # another reader's: not ours
        assert json.loads(cursor_file.read_text())["shipped"] == again[-1][1].cursor
    journal.append(unit_line("trainer.service", "line 7"))

    with JournaldReader(source(journal), state) as reader:
        last = collect(reader, 1)
        assert [(e["message"], p.detect) for e, p in last] == [("line 7", True)]


def test_nothing_acknowledged_starts_again_at_the_first_entry_read(journal, tmp_path):
    state = tmp_path / "state"
    journal.append(*[unit_line("trainer.service", f"line {i}") for i in range(1, 4)])
    with JournaldReader(source(journal), state) as reader:
        collect(reader, 3)
    journal.append(unit_line("trainer.service", "line 4"))
    with JournaldReader(source(journal), state) as reader:
        got = collect(reader, 4)
    assert [(e["message"], p.detect) for e, p in got] == [
        ("line 1", False), ("line 2", False), ("line 3", False), ("line 4", True)]


def test_follows_entries_written_while_it_reads(journal, tmp_path):
    journal.append(unit_line("trainer.service", "before"))
    with JournaldReader(source(journal), tmp_path / "state") as reader:
        assert [e["message"] for e, _ in collect(reader, 1)] == ["before"]
        journal.append(kernel(OOM))
        (event, _), = collect(reader, 1)
        assert event["message"] == OOM


def test_units_and_kernel_select_entries(journal, tmp_path):
    journal.append(
        unit_line("trainer.service", "mine"),
        unit_line("other.service", "not mine"),
        kernel(XID),
        # systemd (PID 1) about the unit: how its main process ended
        {"_TRANSPORT": "journal", "_PID": "1", "_SYSTEMD_UNIT": "init.scope", "SYSLOG_IDENTIFIER": "systemd",
         "UNIT": "trainer.service", "PRIORITY": "5",
         "MESSAGE": "trainer.service: Main process exited, code=killed, status=9/KILL"},
        unit_line("trainer.service", "mine again"),
    )
    with_kernel = read_all(journal, tmp_path / "a", 4, units=["trainer"])
    assert [e["message"] for e, _ in with_kernel] == [
        "mine", XID, "trainer.service: Main process exited, code=killed, status=9/KILL", "mine again"]
    assert with_kernel[2][0]["service.name"] == "trainer.service"
    assert with_kernel[2][0]["log.logger"] == "systemd"

    no_kernel = read_all(journal, tmp_path / "b", 3, units=["trainer.service"], kernel=False)
    assert [e["message"] for e, _ in no_kernel][::2] == ["mine", "mine again"]
    assert XID not in [e["message"] for e, _ in no_kernel]

    # A glob cannot be a journalctl match: filtered here, to the same entries.
    globbed = read_all(journal, tmp_path / "c", 4, units=["train*"])
    assert [e["message"] for e, _ in globbed] == [e["message"] for e, _ in with_kernel]

    everything_but_kernel = read_all(journal, tmp_path / "d", 4, kernel=False)
    assert XID not in [e["message"] for e, _ in everything_but_kernel]
    assert "not mine" in [e["message"] for e, _ in everything_but_kernel]


def test_default_rules_fire_on_kernel_lines(journal, tmp_path):
    from faultwarden.detectors.rules import RuleEngine, RuleSet

    journal.append(unit_line("trainer.service", NAN_STEP), kernel(XID), kernel(OOM))
    engine = RuleEngine(RuleSet.load([]))
    findings = [f for e, _ in read_all(journal, tmp_path / "state", 3) for f in engine.observe(e)]
    faults = {f.fault for f in findings}
    assert {"gpu_hardware", "host_oom_killed"} <= faults
    assert any(f.fault == "gpu_hardware" and f.rule == "gpu-hardware" for f in findings)


def test_a_missing_journalctl_is_one_clear_error(journal, tmp_path):
    with pytest.raises(JournaldError, match="journalctl not found: '/nonexistent/journalctl'"):
        JournaldReader(source(journal, journalctl="/nonexistent/journalctl"), tmp_path / "state")


def test_a_journalctl_that_stops_is_an_error_naming_it(tmp_path):
    src = Source(journald={"files": [str(tmp_path / "missing.journal")]})
    with JournaldReader(src, tmp_path / "state") as reader:
        with pytest.raises(JournaldError) as raised:
            collect(reader, 1)
        assert "journalctl stopped (exit status 1)" in str(raised.value)
        assert "Failed to open" in str(raised.value)
        with pytest.raises(JournaldError):  # and stays stopped
            reader.read()


def test_a_bad_cursor_file_is_ignored(journal, tmp_path):
    journal.append(unit_line("trainer.service", "line 1"))
    state = tmp_path / "state"
    state.mkdir()
    src = source(journal)
    (state / f"journald-{source_key(src)}.cursor").write_text('{"shipped": "s=garbage"}')
    with JournaldReader(src, state) as reader:
        assert [e["message"] for e, _ in collect(reader, 1)] == ["line 1"]


def test_command_lines():
    system = command(Source(journald={}))
    assert system[:4] == ["journalctl", "--output=json", "--follow", "--no-pager"]
    assert "--lines=0" in system  # the machine's own journal: from now on
    assert not any("=" in a and a.startswith(("_", "UNIT")) for a in system)  # all entries

    units = command(Source(journald={"units": ["trainer", "serve.service"], "directory": "/var/log/journal/remote"}),
                    after="C")
    assert "--directory=/var/log/journal/remote" in units and "--after-cursor=C" in units
    assert "--lines=all" not in units and "--lines=0" not in units
    matches = units[units.index("--after-cursor=C") + 1:]
    assert matches == ["_SYSTEMD_UNIT=trainer.service", "_SYSTEMD_UNIT=serve.service",
                       "+", "UNIT=trainer.service", "UNIT=serve.service", "_PID=1",
                       "+", "COREDUMP_UNIT=trainer.service", "COREDUMP_UNIT=serve.service",
                       "+", "_TRANSPORT=kernel"]
    assert "--cursor=O" in command(Source(journald={"files": ["x.journal"]}), at="O")
    assert "-k" not in units and "--dmesg" not in units  # -k means this boot only
