"""A Kibana Discover link for an incident: its run's events around the time it happened.

Discover keeps its state in rison in the URL fragment. Kibana 8.15 moved the data view from
`_a.index` to `_a.dataSource`, so the link is built for the configured Kibana version.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import quote

_PLAIN = re.compile(r"^[A-Za-z0-9_.\-/~]+$")
WINDOW_BEFORE_S, WINDOW_AFTER_S = 600.0, 300.0


def rison(value) -> str:
    """The subset of rison that Discover state needs: dicts, lists, strings, numbers, booleans."""
    if isinstance(value, bool):
        return "!t" if value else "!f"
    if value is None:
        return "!n"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if value and _PLAIN.match(value) and not value[0].isdigit() and value[0] != "-":
            return value
        return "'" + value.replace("!", "!!").replace("'", "!'") + "'"
    if isinstance(value, dict):
        return "(" + ",".join(f"{rison(k)}:{rison(v)}" for k, v in value.items()) + ")"
    if isinstance(value, (list, tuple)):
        return "!(" + ",".join(rison(v) for v in value) + ")"
    raise TypeError(f"no rison for {type(value).__name__}")


def _version(text: str) -> tuple[int, int]:
    major, minor, *_ = (text.split(".") + ["0"])[:2] + [""]
    return int(major), int(minor)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _kql_quote(value) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def discover_url(kibana_url: str, kibana_version: str, data_view: str, group: dict,
                 first_seen: float, last_seen: float) -> str:
    query = " and ".join(f"{field}:{_kql_quote(value)}" for field, value in sorted(group.items())
                         if value is not None)
    app = {"query": {"language": "kuery", "query": query}}
    if _version(kibana_version) >= (8, 15):
        app = {"dataSource": {"dataViewId": data_view, "type": "dataView"}, **app}
    else:
        app = {"index": data_view, **app}
    global_state = {"time": {"from": _iso(first_seen - WINDOW_BEFORE_S), "to": _iso(last_seen + WINDOW_AFTER_S)}}
    safe = "!'():,*~"
    return (f"{kibana_url.rstrip('/')}/app/discover#/?_g={quote(rison(global_state), safe=safe)}"
            f"&_a={quote(rison(app), safe=safe)}")


def link_incident(incident, kibana) -> None:
    """Put the Discover link of `incident` in its links, when a Kibana URL is configured."""
    if kibana.url:
        base = kibana.url.rstrip("/")
        if kibana.space != "default":
            base += f"/s/{kibana.space}"
        incident.links["discover"] = discover_url(base, kibana.version, kibana.data_view, incident.group,
                                                  incident.first_seen, incident.last_seen)
