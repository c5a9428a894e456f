"""A notice as a Slack message: Block Kit blocks, posted to an incoming webhook.

Shape (https://docs.slack.dev/reference/block-kit/blocks): a top-level `text` (the fallback Slack
shows in notifications and where blocks cannot be drawn) and `blocks`:
  header   plain_text: severity, fault, what happened to the incident          (≤ 150 chars)
  section  mrkdwn: the message and the advice                                  (≤ 3000 chars)
  section  fields: severity, rule, host, run, file:line, incident              (≤ 10 × 2000)
  section  mrkdwn: the actions taken and their outcome                         (≤ 3000 chars)
  section  mrkdwn: the evidence lines, as a code block                         (≤ 3000 chars)
  context  mrkdwn: a link to Kibana Discover, when there is one (and it fits)  (≤ 10 elements)
Slack rejects a message whose texts exceed these limits (HTTP 400 invalid_blocks), so every
text is cut to fit. Text from logs is escaped (&, <, > per Slack's "escaping text"), so a log
line cannot forge a link or a mention.
"""
from __future__ import annotations

import json
from typing import Any

from faultwarden.daemon.actions.notify import Notice, action_details

HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000  # each of a section's fields
FALLBACK_MAX = 3000  # Slack truncates longer top-level text; a notification needs far less
ICONS = {"critical": ":red_circle:", "error": ":large_orange_circle:", "warning": ":large_yellow_circle:",
         "info": ":large_blue_circle:"}
WHAT = {"opened": "opened", "realert": "still happening", "recovered": "recovered", "failed": "not recovered",
        "gave_up": "restarts used up"}


def message(notice: Notice) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "emoji": True, "text": clip(
            f"{ICONS.get(notice.severity, '')} {notice.severity} {notice.fault or 'job'}: "
            f"{WHAT.get(notice.event, notice.event)}".strip(), HEADER_MAX)}},
        # a long message must not push the advice out: each gets its share of the 3000
        section(clip(escape(notice.message), 1800)
                + (f"\n*What to do:* {clip(escape(notice.advice), 1100)}" if notice.advice else "")),
        {"type": "section", "fields": [mrkdwn(clip(f"*{name}*\n{value}", FIELD_MAX)) for name, value in facts(notice)]},
    ]
    if notice.actions:
        blocks.append(section("*Actions*\n" + "\n".join(action_line(a) for a in notice.actions)))
    if notice.evidence:
        blocks.append(section("*Evidence*\n" + code(notice.evidence, SECTION_MAX - len("*Evidence*\n"))))
    links = [link(name, url) for name, url in (notice.links or {}).items()]
    links = [text for text in links if len(text) <= SECTION_MAX][:10]  # a cut URL would lead nowhere
    if links:
        blocks.append({"type": "context", "elements": [mrkdwn(text) for text in links]})
    return {"text": clip(escape(notice.subject()), FALLBACK_MAX), "blocks": blocks}  # mrkdwn too


def facts(notice: Notice) -> list[tuple[str, str]]:
    out = [("Severity", notice.severity), ("Rule", f"`{escape(notice.rule)}`" if notice.rule else "—"),
           ("Host", escape(notice.host)), ("Run", escape(notice.run or "—"))]
    if notice.where:
        out.append(("Where", f"`{escape(notice.where)}`"))
    if notice.incident:
        out.append(("Incident", f"`{notice.incident}` ({notice.status})"))
    return out


def action_line(action: dict) -> str:
    details = ", ".join(f"{k}: {json.dumps(v, default=str)}" for k, v in action_details(action).items())
    return clip(f"• *{action['action']}* {action['outcome']}" + (f": {escape(details)}" if details else ""), 400)


def link(name: str, url: str) -> str:
    """Slack's `<url|label>`; `|` and `>` in the URL are percent-encoded so they cannot end it."""
    url = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{url}|{escape(name.capitalize())}>"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": mrkdwn(clip(text, SECTION_MAX))}


def mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def code(lines: tuple[str, ...] | list[str], limit: int) -> str:
    """Lines in a code block that fits `limit` (backtick runs broken so the block stays closed)."""
    body = "\n".join(escape(line).replace("```", "`\u200b``") for line in lines)
    return "```" + clip(body, limit - 6) + "```"


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
