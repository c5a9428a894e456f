"""Notifications to real local receivers: an HTTP server and an SMTP server (aiosmtpd)."""
from __future__ import annotations

import json
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


# Slack's documented Block Kit limits (https://docs.slack.dev/reference/block-kit/blocks and
# .../composition-objects/text-object): what a message may hold, or Slack answers 400 invalid_blocks.
TEXT_TYPES = {"plain_text", "mrkdwn"}


def text_object(obj: dict, limit: int, types=TEXT_TYPES) -> None:
    assert set(obj) <= {"type", "text", "emoji", "verbatim"}, obj
    assert obj["type"] in types and isinstance(obj["text"], str)
    assert 1 <= len(obj["text"]) <= limit, (len(obj["text"]), limit)
    if "emoji" in obj:
        assert obj["type"] == "plain_text" and isinstance(obj["emoji"], bool)


def check_block_kit(message: dict) -> None:
    assert set(message) <= {"text", "blocks"} and isinstance(message["text"], str) and message["text"]
    blocks = message["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            assert set(block) <= {"type", "text", "block_id"}
            text_object(block["text"], 150, types={"plain_text"})
        elif kind == "section":
            assert set(block) <= {"type", "text", "fields", "block_id", "accessory"}
            assert "text" in block or "fields" in block
            if "text" in block:
                text_object(block["text"], 3000)
            if "fields" in block:
                assert 1 <= len(block["fields"]) <= 10
                for field in block["fields"]:
                    text_object(field, 2000)
        elif kind == "context":
            assert set(block) <= {"type", "elements", "block_id"} and 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                text_object(element, 3000)
        else:
            assert kind == "divider" and set(block) <= {"type", "block_id"}


def test_slack_gets_block_kit_within_slacks_limits(webhook):
    inc = incident()
    inc.message = "ml.loss is nan at step 57 <!channel> & " + "x" * 4000  # log text: long, with markup
    inc.advice = "Restore <https://evil.example|here>. " * 10
    inc.evidence = [f"{{'loss': nan, 'step': {i}}} ```" + "y" * 300 for i in range(20)]
    inc.links = {"discover": "https://kibana.example/app/discover#/?_a=(query:'x')"}
    for n in range(30):
        inc.note_action("restart", "done", attempt=n, argv=["python", "train.py", "--resume", "/ckpt/checkpoint-40"])
    url = webhook.url.replace("/hook", "/services/T000/B000/SECRET")
    notifier = Notifier(Notify.model_validate({"slack": [{"url": url, "min_severity": "error"}]}))
    assert notifier.send(Notice.of(incident("warning"), "opened")) == 0  # below its min_severity
    assert notifier.send(Notice.of(inc, "recovered", run_id="r1")) == 1
    assert notifier.wait(30)
    (outcome,) = notifier.drain()
    assert outcome.ok and outcome.detail == "HTTP 200"
    assert "SECRET" not in outcome.channel and outcome.channel.startswith("slack 127.0.0.1:")  # the URL is the secret

    (post,) = webhook.posts
    assert post["headers"]["Content-Type"] == "application/json"
    message = post["json"]
    check_block_kit(message)
    header, summary, facts, actions, evidence, links = message["blocks"]
    assert header["type"] == "header" and header["text"]["text"] == ":red_circle: critical nan_inf: recovered"
    assert message["text"].startswith("[faultwarden] critical nan_inf (recovered): ml.loss is nan at step 57")
    # log text is escaped: no mention or link can be forged; cut to fit, and says so
    assert "&lt;!channel&gt; &amp; xxx" in summary["text"]["text"] and "<!channel>" not in json.dumps(message)
    assert "x…\n*What to do:* Restore &lt;https://evil.example|here&gt;" in summary["text"]["text"]
    fields = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in facts["fields"]}
    assert fields["*Where*"] == "`/logs/job.log:57`" and fields["*Run*"] == "r1"
    assert fields["*Incident*"] == f"`{inc.id}` (open)"
    assert actions["text"]["text"].startswith("*Actions*\n• *restore* done: checkpoint: \"/ckpt/checkpoint-40\"")
    assert evidence["text"]["text"].startswith("*Evidence*\n```{'loss': nan, 'step': 0}")
    assert evidence["text"]["text"].endswith("…```")  # the code block stays closed
    assert links["elements"][0]["text"] == "<https://kibana.example/app/discover#/?_a=(query:'x')|Discover>"


def test_a_webhook_with_a_secret_signs_what_it_posts(webhook):
    import hashlib
    import hmac
    import time

    notifier = Notifier(Notify.model_validate({"webhooks": [{"url": webhook.url, "secret": "s3cret"},
                                                            {"url": webhook.url}]}))
    assert notifier.send(Notice.of(incident(), "opened")) == 2
    assert notifier.wait(30)
    signed, plain = sorted(webhook.wait(2), key=lambda p: "X-Faultwarden-Signature" not in p["headers"])
    stamp = signed["headers"]["X-Faultwarden-Timestamp"]
    assert abs(int(stamp) - time.time()) < 60
    # What a receiver does: HMAC-SHA256 over "<timestamp>.<raw body>", compared in constant time.
    expected = hmac.new(b"s3cret", stamp.encode() + b"." + signed["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signed["headers"]["X-Faultwarden-Signature"], f"sha256={expected}")
    wrong = hmac.new(b"other", stamp.encode() + b"." + signed["body"], hashlib.sha256).hexdigest()
    assert signed["headers"]["X-Faultwarden-Signature"] != f"sha256={wrong}"
    assert "X-Faultwarden-Signature" not in plain["headers"] and "X-Faultwarden-Timestamp" not in plain["headers"]
    assert signed["json"] == plain["json"]
