"""Tell people: a JSON webhook POST, a Slack message (Block Kit, through an incoming webhook)
and an email, each with its own minimum severity.

Sending happens on one background thread, so a slow or dead receiver never holds up detection
or a restart; each channel retries with tenacity back-off and a timeout. Failures are logged and
reported back as outcomes (`drain()`), never raised.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import queue
import smtplib
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from faultwarden.daemon import logs
from faultwarden.daemon.config import Notify, Slack, Smtp, Webhook
from faultwarden.detectors.finding import severity_rank

TIMEOUT_S = 5.0
ATTEMPTS = 3
Channel = Webhook | Slack | Smtp


@dataclass(frozen=True)
class Notice:
    """What one notification says; `incident` is None for a notice about the job itself
    (e.g. the restart budget is used up after crashes no rule explained)."""

    event: str  # opened | realert | recovered | failed | gave_up
    severity: str
    message: str
    incident: str | None = None
    fault: str | None = None
    rule: str | None = None
    advice: str = ""
    group: dict | None = None
    source: dict | None = None
    status: str | None = None
    actions: tuple[dict, ...] = ()
    run_id: str | None = None
    evidence: tuple[str, ...] = ()  # the log lines that made the finding
    links: dict | None = None  # e.g. {"discover": a Kibana Discover URL}

    @classmethod
    def of(cls, incident, event: str, run_id: str | None = None) -> "Notice":
        return cls(event=event, severity=incident.severity, message=incident.message,
                   incident=incident.id, fault=incident.fault, rule=incident.rule,
                   advice=incident.advice, group=dict(incident.group), source=dict(incident.source),
                   status=incident.status, actions=tuple(incident.actions), run_id=run_id,
                   evidence=tuple(incident.evidence), links=dict(incident.links))

    @property
    def host(self) -> str:
        """The host the fault is on (the incident's group says), else this one."""
        return str((self.group or {}).get("host.name") or socket.gethostname())

    @property
    def run(self) -> str | None:
        return (self.group or {}).get("labels.run_id") or self.run_id

    def payload(self) -> dict[str, Any]:
        return {"incident": self.incident, "event": self.event, "fault": self.fault,
                "severity": self.severity, "rule": self.rule, "message": self.message,
                "advice": self.advice, "group": self.group or {}, "source": self.source or {},
                "status": self.status, "actions": list(self.actions), "run_id": self.run,
                "host": self.host, "evidence": list(self.evidence), "links": self.links or {}}

    def subject(self) -> str:
        what = self.fault or "job"
        return f"[faultwarden] {self.severity} {what} ({self.event}): {self.message}"[:200]

    def body(self) -> str:
        lines = [self.message, ""]
        if self.advice:
            lines += ["What to do: " + self.advice, ""]
        for key in ("incident", "fault", "rule", "status", "run_id"):
            if getattr(self, key):
                lines.append(f"{key}: {getattr(self, key)}")
        lines.append(f"host: {self.host}")
        if self.where:
            lines.append(f"source: {self.where}")
        for action in self.actions:
            extra = action_details(action)
            lines.append(f"action {action['action']}: {action['outcome']} {json.dumps(extra, default=str)}")
        if self.evidence:
            lines += ["", "Evidence:"] + [f"  {line}" for line in self.evidence]
        for name, url in (self.links or {}).items():
            lines.append(f"{name}: {url}")
        return "\n".join(lines) + "\n"

    @property
    def where(self) -> str | None:
        """file:line of the incident's first event."""
        if not self.source or not self.source.get("path"):
            return None
        line = self.source.get("line")
        return f"{self.source['path']}:{line}" if line is not None else str(self.source["path"])


def action_details(action: dict) -> dict:
    """An action's own details, without what every action has."""
    return {k: v for k, v in action.items() if k not in ("action", "outcome", "at")}


@dataclass(frozen=True)
class Outcome:
    channel: str
    incident: str | None
    ok: bool
    detail: str


class Notifier:
    def __init__(self, settings: Notify, attempts: int = ATTEMPTS, timeout_s: float = TIMEOUT_S):
        self.settings = settings
        self.attempts = attempts
        self.timeout_s = timeout_s
        self._work: queue.Queue = queue.Queue()
        self._done: queue.Queue[Outcome] = queue.Queue()
        self._pending = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.log = logs.get("faultwarden.notify")

    @property
    def channels(self) -> list[tuple[str, Channel]]:
        out: list[tuple[str, Channel]] = [(f"webhook {w.url}", w) for w in self.settings.webhooks]
        # A Slack webhook URL is a secret: the channel is named by its host only (it is written
        # on incidents and logs).
        out += [(f"slack {urllib.parse.urlsplit(s.url.get_secret_value()).netloc} #{i + 1}", s)
                for i, s in enumerate(self.settings.slack)]
        if self.settings.smtp:
            out.append((f"email {','.join(self.settings.smtp.to)}", self.settings.smtp))
        return out

    def send(self, notice: Notice) -> int:
        """Queue the notice for every channel whose min_severity it reaches; returns how many."""
        targets = [(name, ch) for name, ch in self.channels
                   if severity_rank(notice.severity) >= severity_rank(ch.min_severity)]
        with self._cond:
            self._pending += len(targets)
        for name, channel in targets:
            self._work.put((name, channel, notice))
        if targets and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="faultwarden-notify", daemon=True)
            self._thread.start()
        return len(targets)

    def drain(self) -> list[Outcome]:
        """Outcomes of the sends finished since the last call."""
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    def wait(self, timeout_s: float) -> bool:
        """Wait until everything queued was sent (or failed for good); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout_s)

    def _run(self) -> None:
        while True:
            name, channel, notice = self._work.get()
            try:
                detail = self._deliver(channel, notice)
                outcome = Outcome(name, notice.incident, True, detail)
            except Exception as exc:  # noqa: BLE001 - a notification must never take the daemon down
                outcome = Outcome(name, notice.incident, False, f"{type(exc).__name__}: {exc}")
                self.log.warning("notification failed", channel=name, incident=notice.incident,
                                 error=outcome.detail)
            self._done.put(outcome)
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def _deliver(self, channel: Channel, notice: Notice) -> str:
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=wait_exponential(multiplier=0.2, max=2),
                            retry=retry_if_exception(_transient), reraise=True)
        return retrying(self._send, channel, notice)

    def _send(self, channel: Channel, notice: Notice) -> str:
        if isinstance(channel, Webhook):
            secret = channel.secret.get_secret_value() if channel.secret else None
            return post_json(channel.url, notice.payload(), self.timeout_s, secret)
        if isinstance(channel, Slack):
            from faultwarden.daemon.actions.slack import message  # it builds on Notice

            return post_json(channel.url.get_secret_value(), message(notice), self.timeout_s)
        return send_email(channel, notice, self.timeout_s)


def _transient(exc: BaseException) -> bool:
    """Worth another try: network trouble, 5xx, 429, SMTP temporary (4xx) replies."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500 or exc.code == 429
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= exc.smtp_code < 500
    return isinstance(exc, (OSError, smtplib.SMTPServerDisconnected))


def post_json(url: str, payload: dict, timeout_s: float, secret: str | None = None) -> str:
    body = json.dumps(_finite(payload), default=str, allow_nan=False).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "faultwarden"}
    if secret:
        headers.update(signature_headers(secret, body))
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return f"HTTP {response.status}"


def signature_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """HMAC-SHA256 over `<unix seconds>.<body>`: the receiver knows the post is ours and, by the
    timestamp it covers, that it is not an old one sent again (the Stripe scheme)."""
    stamp = str(int(time.time() if now is None else now))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Faultwarden-Timestamp": stamp, "X-Faultwarden-Signature": f"sha256={digest}"}


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: such numbers (a NaN loss in an action's details) become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def send_email(settings: Smtp, notice: Notice, timeout_s: float) -> str:
    message = EmailMessage()
    message["Subject"] = notice.subject()
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.to)
    message.set_content(notice.body())
    with smtplib.SMTP(settings.host, settings.port, timeout=timeout_s) as smtp:
        if settings.starttls:
            smtp.starttls()
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else ""
            smtp.login(settings.username, password)
        refused = smtp.send_message(message)
    return f"sent to {len(settings.to) - len(refused)} of {len(settings.to)}"
