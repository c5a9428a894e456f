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
