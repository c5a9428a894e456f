"""The incident book: dedupe, realert, silence, and a person's ack while the daemon runs."""
from __future__ import annotations

from faultwarden.daemon.incidents import IncidentBook
from faultwarden.detectors.finding import Finding, Where


def finding(t: float, rule: str = "nan-loss", offset: int = 0) -> Finding:
    return Finding(rule=rule, fault="nan_inf", severity="error", group={"labels.run_id": "r1"}, time=t,
                   source=Where("/logs/a.log", 3, offset), message="loss is nan", realert_s=60)


def test_one_incident_per_rule_and_group_realerted_after_the_quiet_period():
    book = IncidentBook()
    first = book.record(finding(0))
    again = book.record(finding(10, offset=99))
    later = book.record(finding(70, offset=120))
    assert first.opened and first.alert and not again.opened and not again.alert and later.alert
    assert len(book.incidents) == 1 and first.incident.count == 3
    assert first.incident.source == {"path": "/logs/a.log", "line": 3}


def test_an_ack_written_by_another_process_is_merged_not_overwritten(tmp_path):
    path = tmp_path / "incidents.json"
    daemon = IncidentBook(path)
    inc = daemon.record(finding(0)).incident
    daemon.save()
    person = IncidentBook(path)  # `faultwarden incidents ack` in another process
    person.ack(inc.id[:6])
    person.silence({"fault": "nan_inf"}, 3600)
    person.save()
    daemon.record(finding(5, rule="other"))
    daemon.save()  # the daemon's next save keeps the person's ack and silence
    after = IncidentBook(path)
    assert after.get(inc.id).acknowledged
    assert len(after.silences) == 1
    assert not daemon.record(finding(100)).alert  # acknowledged: no realert


def fault(fault: str, t: float, run: str = "r1", path: str = "/logs/a.log", group: dict | None = None) -> Finding:
    return Finding(rule=fault.replace("_", "-"), fault=fault, severity="error",
                   group={"labels.run_id": run} if group is None else group, time=t,
                   source=Where(path, 3, int(t)), message=fault, realert_s=60)


def test_a_fault_caused_by_another_in_the_same_run_is_inhibited_not_told():
    book = IncidentBook()
    oom = book.record(fault("cuda_oom", 0))
    hang = book.record(fault("hang", 300))  # the OOM'd job stopped logging
    other_run = book.record(fault("hang", 300, run="r2"))
    unrelated = book.record(fault("data_error", 301))  # not a consequence of an OOM
    assert oom.alert and hang.opened and not hang.alert
    assert hang.incident.status == "inhibited" and hang.incident.inhibited_by == oom.incident.id
    assert other_run.alert and other_run.incident.status == "open"
    assert unrelated.alert and unrelated.incident.status == "open"
    assert not book.record(fault("hang", 400)).alert  # still inhibited: no realert either
    assert hang.incident in book.listing()  # recorded, listed, just not told


def test_inhibition_needs_the_cause_first_recent_and_active():
    book = IncidentBook()
    assert book.record(fault("hang", 0)).alert  # a hang before any OOM is its own problem
    book = IncidentBook()
    book.record(fault("cuda_oom", 0))
    late = book.record(fault("throughput_drop", 601 + 1))  # the OOM is 10 minutes quiet
    assert late.alert and late.incident.status == "open"
    book = IncidentBook()
    oom = book.record(fault("cuda_oom", 0)).incident
    book.resolve(oom)  # restored and restarted
    assert book.record(fault("hang", 30)).alert


def test_an_inhibited_incident_is_told_once_its_cause_is_over():
    book = IncidentBook()
    oom = book.record(fault("cuda_oom", 0)).incident
    first = book.record(fault("hang", 10))
    book.resolve(oom)
    again = book.record(fault("hang", 20))
    assert not first.alert and again.opened and again.alert
    assert again.incident is first.incident and again.incident.status == "open"
    assert again.incident.inhibited_by is None and again.incident.count == 2


def test_without_a_shared_run_field_the_same_file_decides():
    book = IncidentBook()
    book.record(fault("nan_inf", 0, group={}))
    same_file = book.record(fault("loss_spike", 5, group={}))
    other_file = book.record(fault("loss_spike", 5, group={"labels.stage": "eval"}, path="/logs/b.log"))
    assert same_file.incident.status == "inhibited" and other_file.incident.status == "open"


def test_the_inhibition_survives_a_restart(tmp_path):
    book = IncidentBook(tmp_path / "incidents.json")
    oom = book.record(fault("cuda_oom", 0)).incident
    book.record(fault("hang", 10))
    book.save()
    again = IncidentBook(tmp_path / "incidents.json")
    hang = next(i for i in again.incidents.values() if i.fault == "hang")
    assert hang.status == "inhibited" and hang.inhibited_by == oom.id
    assert not again.record(fault("hang", 20)).alert


def test_the_inhibition_table_and_window_are_the_configs():
    from faultwarden.daemon.config import Incidents
    from faultwarden.daemon.incidents import Inhibition

    mine = Inhibition.of(Incidents.model_validate(
        {"inhibit": [{"cause": "data_error", "inhibits": ["hang"]}], "inhibit_window_s": 30}))
    book = IncidentBook(inhibition=mine)
    book.record(fault("data_error", 0))
    assert book.record(fault("hang", 20)).incident.status == "inhibited"
    assert book.record(fault("throughput_drop", 20)).alert  # not in this table
    book = IncidentBook(inhibition=mine)
    book.record(fault("data_error", 0))
    assert book.record(fault("hang", 31)).alert  # past this window
    book = IncidentBook(inhibition=Inhibition.of(Incidents.model_validate({"inhibit": []})))
    book.record(fault("cuda_oom", 0))
    assert book.record(fault("hang", 10)).alert  # inhibition off
