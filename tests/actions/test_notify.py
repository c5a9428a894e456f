"""Notifications to real local receivers: an HTTP server and an SMTP server (aiosmtpd)."""
from __future__ import annotations

import socket

from faultwarden.daemon.actions.notify import Notice, Notifier
from faultwarden.daemon.config import Notify
from faultwarden.daemon.incidents import Incident
from faultwarden.detectors.finding import Finding, Where


def incident(severity: str = "critical") -> Incident:
    inc = Incident.open(Finding(
        rule="nan-loss", fault="nan_inf", severity=severity, group={"labels.run_id": "r1"}, time=100.0,
        source=Where("/logs/job.log", 57, 4096), message="ml.loss is nan at step 57",
        advice="Restore the last healthy checkpoint.", actions=("restore", "notify")))
    inc.note_action("restore", "done", checkpoint="/ckpt/checkpoint-40", loss=float("nan"))
    return inc


def test_webhook_gets_the_incident_as_json(webhook):
    notifier = Notifier(Notify.model_validate({"webhooks": [{"url": webhook.url}]}))
    assert notifier.send(Notice.of(incident(), "recovered", run_id="r1")) == 1
    assert notifier.wait(30)
    (outcome,) = notifier.drain()
    assert outcome.ok and outcome.detail == "HTTP 200"
    post = webhook.wait(1)[0]
    body = post["json"]
    assert post["headers"]["Content-Type"] == "application/json"
    assert {k: body[k] for k in ("fault", "severity", "rule", "event", "run_id")} == {
        "fault": "nan_inf", "severity": "critical", "rule": "nan-loss", "event": "recovered", "run_id": "r1"}
    assert body["incident"] == incident().id
    assert body["source"] == {"path": "/logs/job.log", "line": 57}
    assert body["group"] == {"labels.run_id": "r1"}
    assert body["advice"] == "Restore the last healthy checkpoint."
    assert body["actions"][0]["checkpoint"] == "/ckpt/checkpoint-40"
    assert body["actions"][0]["loss"] == "nan"  # JSON has no NaN


def test_min_severity_decides_who_hears(webhook):
    notifier = Notifier(Notify.model_validate({"webhooks": [{"url": webhook.url, "min_severity": "error"}]}))
    assert notifier.send(Notice.of(incident("warning"), "opened")) == 0
    assert notifier.send(Notice.of(incident("error"), "opened")) == 1
    assert notifier.wait(30)
    assert [p["json"]["severity"] for p in webhook.posts] == ["error"]


def test_webhook_server_errors_are_retried(webhook):
    webhook.status = 503
    notifier = Notifier(Notify.model_validate({"webhooks": [{"url": webhook.url}]}), attempts=3)
    notifier.send(Notice.of(incident(), "opened"))
    assert notifier.wait(60)
    (outcome,) = notifier.drain()
    assert not outcome.ok and "503" in outcome.detail  # three tries, then given up, no exception
    webhook.status = 200
    notifier.send(Notice.of(incident(), "opened"))
    assert notifier.wait(60)
    assert notifier.drain()[0].ok


def test_unreachable_receiver_is_logged_not_raised():
    with socket.socket() as closed:  # bound, never listening: connections are refused at once
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
        notifier = Notifier(Notify.model_validate({"webhooks": [{"url": url}]}), attempts=2)
        notifier.send(Notice.of(incident(), "opened"))
        assert notifier.wait(60)
    (outcome,) = notifier.drain()
    assert not outcome.ok and "refused" in outcome.detail.lower()


def test_email_through_smtp(smtp_server):
    notifier = Notifier(Notify.model_validate({"smtp": {
        "host": "127.0.0.1", "port": smtp_server.port, "sender": "fw@example.org",
        "to": ["ml-oncall@example.org", "me@example.org"], "min_severity": "error"}}))
    assert notifier.send(Notice.of(incident("warning"), "opened")) == 0
    assert notifier.send(Notice.of(incident(), "recovered")) == 1
    assert notifier.wait(30)
    (outcome,) = notifier.drain()
    assert outcome.ok and outcome.detail == "sent to 2 of 2"
    (envelope,) = smtp_server.messages
    assert envelope.mail_from == "fw@example.org"
    assert envelope.rcpt_tos == ["ml-oncall@example.org", "me@example.org"]
    text = envelope.content.decode()
    assert "Subject: [faultwarden] critical nan_inf (recovered): ml.loss is nan at step 57" in text
    assert "What to do: Restore the last healthy checkpoint." in text
    assert "action restore: done" in text
