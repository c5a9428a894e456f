"""Index setup: composable templates with explicit ECS mappings, the incidents index, and an
ILM policy where the cluster has ILM. `setup()` is idempotent: run it at every start.

Layout (see docs/shipping.md):
- events: plain daily indices `<prefix>-events-YYYY.MM.DD`, picked from the event's own time.
  Not a data stream, even where the cluster has them: a data stream's `_id` is only unique per
  backing index, so a replay after a rollover would store events twice; a daily index named by
  the event's day keeps `create` + deterministic ids exact. Retention: delete old daily indices
  (an ILM delete phase does it where ILM exists).
- incidents: one plain index `<prefix>-incidents`, document id = incident id.

Only core server field types are used (no match_only_text, wildcard, constant_keyword), so the
same mapping works on every distribution.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from faultwarden.daemon import logs

TEMPLATE_VERSION = 1
EVENTS_PRIORITY = 510  # > 500: wins over built-in templates should a pattern ever overlap them
INCIDENTS_PRIORITY = 511  # distinct from the events one: equal priorities may not overlap
FIELDS_LIMIT = 2000
RETENTION_DAYS = 30
KEYWORD = {"type": "keyword", "ignore_above": 1024}

# Every field faultwarden writes or Kibana objects read, by dotted name. Typed here once.
EVENT_FIELDS: dict[str, dict[str, Any]] = {
    "@timestamp": {"type": "date"},
    "message": {"type": "text"},
    "tags": {"type": "keyword"},
    "ecs.version": {"type": "keyword"},
    "log.level": {"type": "keyword"},
    "log.logger": {"type": "keyword"},
    "log.file.path": {"type": "keyword"},
    "log.file.line": {"type": "long"},
    "log.offset": {"type": "long"},
    "event.ingested": {"type": "date"},
    "event.created": {"type": "date"},
    "event.kind": {"type": "keyword"},
    "event.dataset": {"type": "keyword"},
    "service.name": {"type": "keyword"},
    "host.name": {"type": "keyword"},
    "process.pid": {"type": "long"},
    "error.type": {"type": "keyword"},
    "error.message": {"type": "text"},
    "error.stack_trace": {"type": "text"},
    "trace.id": {"type": "keyword"},
    "span.id": {"type": "keyword"},
    "labels.run_id": {"type": "keyword"},
    "ml.step": {"type": "long"},
    "ml.epoch": {"type": "double"},
    "ml.loss": {"type": "double"},
    "ml.learning_rate": {"type": "double"},
    "ml.grad_norm": {"type": "double"},
    "ml.loss_scale": {"type": "double"},
    "ml.step_time_s": {"type": "double"},
    "ml.samples_per_s": {"type": "double"},
    "ml.tokens_per_s": {"type": "double"},
    "ml.latency_ms": {"type": "double"},
    "ml.batch_size": {"type": "long"},
    "ml.rank": {"type": "long"},
    "ml.world_size": {"type": "long"},
    "ml.memory.rss_bytes": {"type": "long"},
    "ml.memory.gpu_allocated_bytes": {"type": "long"},
    "ml.memory.gpu_reserved_bytes": {"type": "long"},
    "ml.checkpoint.path": {"type": "keyword"},
    "ml.checkpoint.step": {"type": "long"},
    "ml.checkpoint.sha256": {"type": "keyword"},
    "ml.non_finite": {"type": "keyword"},
}

# The incident JSON (daemon/incidents.py `Incident.to_json()`) plus what the index adds.
INCIDENT_FIELDS: dict[str, dict[str, Any]] = {
    "@timestamp": {"type": "date"},  # = first_seen
    "id": {"type": "keyword"},
    "fault": {"type": "keyword"},
    "severity": {"type": "keyword"},
    "status": {"type": "keyword"},
    "rule": {"type": "keyword"},
    "first_seen": {"type": "date", "format": "epoch_second||strict_date_optional_time"},
    "last_seen": {"type": "date", "format": "epoch_second||strict_date_optional_time"},
    "count": {"type": "long"},
    "group": {"type": "flattened"},  # group fields differ per rule; one field, any keys
    "source.path": {"type": "keyword"},
    "source.line": {"type": "long"},
    "message": {"type": "text"},
    "advice": {"type": "text"},
    "evidence": {"type": "text"},
    "explanation": {"type": "object", "enabled": False},  # kept, not indexed: shapes vary
    "actions": {"type": "flattened"},
    "acknowledged": {"type": "boolean"},
    "acknowledged_at": {"type": "date"},
    "inhibited_by": {"type": "keyword"},
}

_STRINGS_AS_KEYWORD = {"strings_as_keyword": {"match_mapping_type": "string", "mapping": KEYWORD}}


def nest(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Dotted names → the nested `properties` tree a mapping wants."""
    root: dict[str, Any] = {}
    for name, mapping in fields.items():
        node = root
        *parents, leaf = name.split(".") if name != "@timestamp" else ["@timestamp"]
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[leaf] = dict(mapping)
    return root


def _settings() -> dict[str, Any]:
    return {
        "number_of_shards": 1,
        "auto_expand_replicas": "0-1",  # a replica where there is a second node, none otherwise
        # A chatty log with ever-new keys must not grow the mapping without end nor lose the
        # event: beyond the limit new fields stay in _source only (listed in `_ignored`).
        "mapping.total_fields.limit": FIELDS_LIMIT,
        "mapping.total_fields.ignore_dynamic_beyond_limit": True,
    }


def events_template(prefix: str, ilm: bool = False) -> dict[str, Any]:
    settings = _settings()
    if ilm:
        settings["lifecycle.name"] = f"{prefix}-events"
    return {
        "index_patterns": [f"{prefix}-events-*"],
        "priority": EVENTS_PRIORITY,
        "version": TEMPLATE_VERSION,
        "_meta": {"managed_by": "faultwarden", "description": "faultwarden events (daily indices)"},
        "template": {
            "settings": {"index": settings},
            "mappings": {
                "dynamic": True,
                "date_detection": False,  # a string that looks like a date stays a keyword
                "numeric_detection": False,
                "dynamic_templates": [
                    # labels are keyword whatever their JSON type (ECS: labels are keyword).
                    *({f"labels_{t}": {"path_match": "labels.*", "match_mapping_type": t,
                                       "mapping": KEYWORD}}
                      for t in ("string", "long", "double", "boolean")),
                    # An unknown ml.* number is a double even if the first value looks integral.
                    *({f"ml_{t}": {"path_match": "ml.*", "match_mapping_type": t,
                                   "mapping": {"type": "double"}}}
                      for t in ("long", "double")),
                    _STRINGS_AS_KEYWORD,
                ],
                "properties": nest(EVENT_FIELDS),
            },
        },
    }


def incidents_template(prefix: str) -> dict[str, Any]:
    return {
        "index_patterns": [incidents_index(prefix)],
        "priority": INCIDENTS_PRIORITY,
        "version": TEMPLATE_VERSION,
        "_meta": {"managed_by": "faultwarden", "description": "faultwarden incidents, id = incident id"},
        "template": {
            "settings": {"index": _settings()},
            "mappings": {"dynamic": True, "date_detection": False,
                         "dynamic_templates": [_STRINGS_AS_KEYWORD],
                         "properties": nest(INCIDENT_FIELDS)},
        },
    }


def ilm_policy() -> dict[str, Any]:
    return {"phases": {"hot": {"actions": {}},
                       "delete": {"min_age": f"{RETENTION_DAYS}d", "actions": {"delete": {}}}},
            "_meta": {"managed_by": "faultwarden"}}


def incidents_index(prefix: str) -> str:
    return f"{prefix}-incidents"


@dataclass
class Capabilities:
    """What this cluster offers beyond the core server, found by asking it."""

    ilm: bool = False
    data_streams: bool = False


@dataclass
class SetupReport:
    capabilities: Capabilities
    templates: list[str] = field(default_factory=list)
    ilm_policy: str | None = None
    incidents_index_created: bool = False


def probe(client: Any) -> Capabilities:
    from elasticsearch import ApiError

    caps = Capabilities()
    try:
        client.ilm.get_status()
        caps.ilm = True
    except ApiError as exc:  # 400 "no handler found": the distribution has no ILM
        _absent_or_raise(exc)
    try:
        # Without the data-streams module `_data_stream` is read as an index name and refused.
        client.perform_request("GET", "/_data_stream", headers={"accept": "application/json"})
        caps.data_streams = True
    except ApiError as exc:
        _absent_or_raise(exc)
    return caps


def _absent_or_raise(exc: Exception) -> None:
    """A refusal that means "no such feature here" (400, 404, 405; 403: not for this user) is
    an answer; anything else (401 wrong password, 429, 5xx) is not, and must not be read as one."""
    if getattr(exc, "status_code", None) not in (400, 403, 404, 405):
        raise exc


def setup(client: Any, prefix: str) -> SetupReport:
    """Create or update the templates, the ILM policy (where ILM exists) and the incidents index.

    Safe to repeat: templates and the policy are replaced with the same bodies, and an existing
    incidents index (with its documents) is kept."""
    from elasticsearch import BadRequestError

    log = logs.get("faultwarden.ship")
    caps = probe(client)
    report = SetupReport(caps)
    if caps.ilm:
        client.ilm.put_lifecycle(name=f"{prefix}-events", policy=ilm_policy())
        report.ilm_policy = f"{prefix}-events"
    else:
        log.info("no ILM on this cluster: events are kept until their daily index is deleted",
                 retention=f"delete {prefix}-events-<day> indices older than you need")
    for name, body in ((f"{prefix}-events", events_template(prefix, caps.ilm)),
                       (f"{prefix}-incidents", incidents_template(prefix))):
        client.indices.put_index_template(name=name, **body)
        report.templates.append(name)
    try:
        client.indices.create(index=incidents_index(prefix))
        report.incidents_index_created = True
    except BadRequestError as exc:
        if getattr(exc, "error", "") != "resource_already_exists_exception":
            raise
    return report
