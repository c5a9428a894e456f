"""Redaction: secrets in log text are replaced as each event is parsed, before anything else
sees it, so detectors, incidents, notifications, reports and Elasticsearch all get the redacted
text (the log file itself is the job's and stays as written).

A source opts in with `redact:` in its config; `secrets: true` (the default there) adds the
built-in patterns below to the source's own `patterns`. Every string value of the event is
searched; each match is replaced by `replacement`.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

# Token formats with a recognisable shape (prefix and length), so that ordinary text, hashes and
# ids are left alone. Lookbehinds keep the context a reader needs (`Bearer …`, `https://…@host`).
SECRETS: dict[str, str] = {
    "huggingface_token": r"\bhf_[A-Za-z0-9]{30,}",
    "github_token": r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})",
    "openai_key": r"\bsk-(?:proj-|svcacct-)?[A-Za-z0-9_-]{32,}",
    "slack_token": r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    "aws_access_key_id": r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    "bearer_token": r"(?<=[Bb]earer )[A-Za-z0-9._~+/-]{16,}=*",
    "url_password": r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)",
}


class Redactor:
    """Replaces every match of the patterns in an event's string values, in place."""

    def __init__(self, patterns: Iterable[str], replacement: str = "[redacted]"):
        self.replacement = replacement
        self._regex = re.compile("|".join(f"(?:{p})" for p in patterns))

    @classmethod
    def for_source(cls, settings: Any) -> "Redactor | None":
        """The redactor a source's `redact` settings ask for; None when it asks for none."""
        if settings is None:
            return None
        patterns = [*(SECRETS.values() if settings.secrets else ()), *settings.patterns]
        return cls(patterns, settings.replacement) if patterns else None

    def __call__(self, event: dict[str, Any]) -> None:
        sub, replacement = self._regex.sub, self.replacement
        for key, value in event.items():
            if type(value) is str:
                event[key] = sub(replacement, value)
            elif type(value) is list and any(type(v) is str for v in value):
                event[key] = [sub(replacement, v) if type(v) is str else v for v in value]
