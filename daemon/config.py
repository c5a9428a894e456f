"""The one config file, validated at load into typed objects.

Every key has a default, so a config with one source glob works. Secrets come from the
environment (FAULTWARDEN_ES_PASSWORD, FAULTWARDEN_ES_API_KEY, FAULTWARDEN_SMTP_PASSWORD) or from
files, never from argv.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from faultwarden.detectors import yamlfile
from faultwarden.detectors.finding import FAULTS
from faultwarden.detectors.yamlfile import FileError

SEARCH_PATH = ("faultwarden.yaml", "/etc/faultwarden/faultwarden.yaml")
Severity = Literal["info", "warning", "error", "critical"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Journald(Strict):
    """The systemd journal as a source (kernel messages included: Xid and OOM-killer lines)."""

    units: list[str] = Field([], description="Only these units (journalctl -u); empty: all.")
    kernel: bool = Field(True, description="Include kernel messages (journalctl -k's).")
    directory: str | None = Field(None, description="A journal directory (journalctl -D); default: the system's.")
    files: list[str] = Field([], description="Journal files (journalctl --file), e.g. from systemd-journal-remote.")
    journalctl: str = "journalctl"


class Redact(Strict):
    secrets: bool = Field(True, description=(
        "Replace tokens of known shapes: Hugging Face, GitHub, OpenAI, Slack, AWS access key ids, "
        "bearer tokens, passwords in URLs."))
    patterns: list[str] = Field([], description="Your own regexes; every match is replaced.")
    replacement: str = "[redacted]"

    @field_validator("patterns")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for pattern in v:
            _regex(pattern)
        return v


class Source(Strict):
    paths: list[str] = Field([], description="Files or globs; `**` recurses.")
    journald: Journald | None = Field(None, description="Read the systemd journal instead of files.")
    format: Literal["auto", "json", "text"] = "auto"
    pattern: str | None = Field(
        None, description="A regex with named groups for a format no built-in parser knows (HDFS, BGL, ...): "
                          "groups named like event fields (timestamp, level, message, ml.step, labels.x) fill them.")
    aliases: dict[str, str] = Field(
        {}, description="More `key: value` progress-line keys mapped to event fields, e.g. {'lm loss': 'ml.loss'}.")
    service: str | None = None
    run_id: str | None = None
    dataset: Literal["training", "inference"] | None = None
    labels: dict[str, str] = {}
    multiline_start: str | None = Field(
        None, description="Regex that starts a new record; other lines join the one before.")
    redact: Redact | None = Field(None, description=(
        "Replace secrets in this source's events as they are parsed, before detection, "
        "notifications and shipping see them."))

    @field_validator("paths", mode="before")
    @classmethod
    def _one_path(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _paths_or_journal(self):
        if not self.paths and self.journald is None:
            raise ValueError("a source needs `paths` (files or globs) or `journald`")
        return self

    @field_validator("multiline_start", "pattern")
    @classmethod
    def _regex_field(cls, v: str | None) -> str | None:
        return v if v is None else _regex(v)


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regex ({exc}): {pattern!r}") from None
    return pattern


def _url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"expected a URL such as http://127.0.0.1:9200, got {url!r}")
    return url


Url = Annotated[str, AfterValidator(_url)]


_INDEX_PREFIX = re.compile(r"[a-z0-9][a-z0-9._+-]*")


class Elasticsearch(Strict):
    hosts: list[Url] = []
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    index_prefix: str = "faultwarden"
    batch_events: int = Field(1000, ge=1)
    batch_bytes: int = Field(5_000_000, ge=1024)
    flush_interval_s: float = Field(1.0, gt=0)
    request_timeout_s: float = Field(30.0, gt=0)
    max_in_flight_events: int = Field(20_000, ge=100)
    max_requests_in_flight: int = Field(4, ge=1, le=64, description=(
        "Bulk requests sent at once; more keep a busy node's write threads fed while answers travel."))

    @field_validator("hosts", mode="before")
    @classmethod
    def _hosts(cls, v):
        if isinstance(v, str):
            raise ValueError(f"expected a list of URLs, got {v!r}")
        return v

    @field_validator("index_prefix")
    @classmethod
    def _index_prefix(cls, v):
        # Elasticsearch's index-name rules, narrowed to what cannot surprise (indices are
        # `<prefix>-events-<day>`): checked here rather than met as a 400 on every request.
        if not _INDEX_PREFIX.fullmatch(v) or len(v) > 200:
            raise ValueError("expected lowercase letters, digits and . _ + - (a letter or digit "
                             f"first, at most 200), got {v!r}")
        return v



class Kibana(Strict):
    url: str | None = Field(None, description="Set it to give every incident a Discover link.")
    version: str = Field("9.2.0", pattern=r"^\d+\.\d+(\.\d+)?$",
                         description="Discover links differ before and after Kibana 8.15.")
    space: str = "default"
    data_view: str = Field("faultwarden-events", description="The events data view's id (docker/kibana).")


class Anomaly(Strict):
    model: str | None = Field(None, description="A model file from `faultwarden anomaly fit`.")


class Detectors(Strict):
    rules: list[str] = Field([], description="Rule folders, layered after the default pack.")
    default_rules: bool = True
    anomaly: Anomaly = Anomaly()


class Restart(Strict):
    max_restarts: int = Field(3, ge=0)
    window_s: float = Field(3600, gt=0)
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    grace_period_s: float = Field(10.0, ge=0)
    command: list[str] | None = Field(None, description="For jobs faultwarden did not start.")


class Restore(Strict):
    checkpoint_dirs: list[str] = []
    resume: list[str] = Field(["--resume_from_checkpoint", "{checkpoint}"],
                              description="argv elements appended on restart; {checkpoint} is filled.")
    resume_env: str | None = "FAULTWARDEN_RESUME_FROM"


class Actions(Strict):
    restart: Restart = Restart()
    restore: Restore = Restore()


class Webhook(Strict):
    url: str
    min_severity: Severity = "warning"
    secret: SecretStr | None = Field(None, description=(
        "Sign each post: X-Faultwarden-Signature is sha256=HMAC(secret, '<X-Faultwarden-Timestamp>.<body>')."))


class Smtp(Strict):
    host: str
    port: int = 25
    sender: str = "faultwarden@localhost"
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    min_severity: Severity = "error"


class Slack(Strict):
    url: SecretStr = Field(description="The Slack incoming-webhook URL (a secret: whoever holds it can post).")
    min_severity: Severity = "warning"


class Notify(Strict):
    webhooks: list[Webhook] = []
    slack: list[Slack] = []
    smtp: Smtp | None = None


Fault = Literal[FAULTS]


class InhibitRule(Strict):
    cause: Fault
    inhibits: list[Fault] = Field(min_length=1)


class Incidents(Strict):
    inhibit: list[InhibitRule] | None = Field(None, description=(
        "Which faults inhibit which in the same run; unset: the built-in table (docs/actions.md); []: none."))
    inhibit_window_s: float = Field(600.0, ge=0, description=(
        "How long after its last finding a cause still inhibits."))


class Metrics(Strict):
    port: int | None = Field(None, description="Prometheus metrics on 127.0.0.1:PORT when set.")


class Logging(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


def default_state_dir() -> str:
    if os.geteuid() == 0 and not os.environ.get("XDG_STATE_HOME"):
        return "/var/lib/faultwarden"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return os.path.join(base, "faultwarden")


class Config(Strict):
    sources: list[Source] = []
    elasticsearch: Elasticsearch = Elasticsearch()
    kibana: Kibana = Kibana()
    detectors: Detectors = Detectors()
    actions: Actions = Actions()
    notify: Notify = Notify()
    incidents: Incidents = Incidents()
    state_dir: str = Field(default_factory=default_state_dir)
    metrics: Metrics = Metrics()
    logging: Logging = Logging()
    _path: str | None = PrivateAttr(None)

    @property
    def path(self) -> str | None:
        """Where this config was read from (None: all defaults)."""
        return self._path


SECRETS = {
    ("elasticsearch", "password"): "FAULTWARDEN_ES_PASSWORD",
    ("elasticsearch", "api_key"): "FAULTWARDEN_ES_API_KEY",
}


def _apply_env(data: dict) -> dict:
    for (section, key), var in SECRETS.items():
        if os.environ.get(var):
            data.setdefault(section, {})
            if isinstance(data[section], dict):
                data[section][key] = os.environ[var]
    if os.environ.get("FAULTWARDEN_SMTP_PASSWORD") and isinstance(data.get("notify", {}).get("smtp"), dict):
        data["notify"]["smtp"]["password"] = os.environ["FAULTWARDEN_SMTP_PASSWORD"]
    if os.environ.get("FAULTWARDEN_ES_HOSTS"):
        data.setdefault("elasticsearch", {})["hosts"] = os.environ["FAULTWARDEN_ES_HOSTS"].split(",")
    return data


def find(path: str | None) -> str | None:
    if path:
        return path
    return next((p for p in SEARCH_PATH if os.path.exists(p)), None)


def load(path: str | None = None) -> Config:
    """The effective config: the file found (or none: all defaults), then environment overrides.

    Raises FileError naming file, line and key.
    """
    found = find(path)
    if found is None:
        return Config.model_validate(_apply_env({}))
    if not Path(found).exists():
        raise FileError(found, None, None, "no such config file")
    doc = yamlfile.read(found)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise FileError(found, 1, None, "expected a mapping of sections (sources, elasticsearch, ...)")
    config = yamlfile.load(Config, doc, _apply_env(dict(data)))
    config._path = found
    return config


def masked(config: Config) -> dict:
    """The effective config as plain data, secrets shown as '***'."""
    return config.model_dump(mode="json")


def json_schema() -> dict:
    """The config file's JSON Schema, for editors (docs/config.schema.json is this, committed)."""
    schema = Config.model_json_schema(mode="validation")
    schema["title"] = "faultwarden config"
    return schema


if __name__ == "__main__":  # python -m faultwarden.daemon.config > docs/config.schema.json
    import json

    print(json.dumps(json_schema(), indent=2, sort_keys=True))
