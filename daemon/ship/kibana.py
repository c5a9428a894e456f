"""Kibana saved objects for faultwarden (data views, saved searches, a dashboard) and their import.

The objects are built here, for the configured index prefix; `docker/kibana/faultwarden.ndjson`
is the same set for the default prefix (`faultwarden kibana export` writes it; a test keeps the
two in step). Shapes follow Kibana's own sample data (index-pattern 7.11.0, search 7.9.3,
dashboard 8.7.0 migration versions, by-value Lens panels); Kibana migrates them forward on
import, so one file serves Kibana 8.11 and later.
"""
from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

_CORE_MIGRATION = "8.8.0"
_PANEL_VERSION = "8.11.0"
_KQL_FIELD = re.compile(r"([A-Za-z_@][\w.@]*)\s*:")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


# --- building blocks ------------------------------------------------------------------------
def _data_view(view_id: str, title: str, name: str) -> dict[str, Any]:
    return {"type": "index-pattern", "id": view_id, "coreMigrationVersion": _CORE_MIGRATION,
            "typeMigrationVersion": "7.11.0", "managed": False, "references": [],
            "attributes": {"title": title, "name": name, "timeFieldName": "@timestamp",
                           "fields": "[]", "fieldFormatMap": "{}", "runtimeFieldMap": "{}",
                           "typeMeta": "{}"}}


def _search(search_id: str, view_id: str, title: str, query: str, columns: list[str]) -> dict[str, Any]:
    source = {"query": {"query": query, "language": "kuery"}, "filter": [],
              "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    return {"type": "search", "id": search_id, "coreMigrationVersion": _CORE_MIGRATION,
            "typeMigrationVersion": "7.9.3",
            "references": [{"id": view_id, "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
                            "type": "index-pattern"}],
            "attributes": {"title": title, "description": "", "columns": columns,
                           "sort": [["@timestamp", "desc"]],
                           "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps(source)}}}


def _date_column() -> dict[str, Any]:
    return {"label": "@timestamp", "dataType": "date", "operationType": "date_histogram",
            "sourceField": "@timestamp", "isBucketed": True, "scale": "interval",
            "params": {"interval": "auto"}}


def _metric_column(operation: str, field: str | None) -> dict[str, Any]:
    if operation == "count":
        return {"label": "Count of records", "dataType": "number", "operationType": "count",
                "sourceField": "___records___", "isBucketed": False, "scale": "ratio"}
    return {"label": f"{operation.capitalize()} of {field}", "dataType": "number",
            "operationType": operation, "sourceField": field, "isBucketed": False, "scale": "ratio"}


def _terms_column(field: str, size: int = 5) -> dict[str, Any]:
    return {"label": f"Top values of {field}", "dataType": "string", "operationType": "terms",
            "sourceField": field, "isBucketed": True, "scale": "ordinal",
            "params": {"size": size, "orderBy": {"type": "column", "columnId": "c_metric"},
                       "orderDirection": "desc"}}


@dataclass
class LensXY:
    """A by-value Lens XY chart: metric over @timestamp, split by a field's top values."""

    panel: str
    title: str
    view_id: str
    metric: str  # "count" or an operation such as "average"
    field: str | None
    split: str | None
    series: str = "bar_stacked"

    def panel_json(self, x: int, y: int, w: int = 24, h: int = 15) -> dict[str, Any]:
        layer = f"l_{self.panel}"
        columns = {"c_time": _date_column(), "c_metric": _metric_column(self.metric, self.field)}
        order = ["c_time", "c_metric"]
        vis_layer: dict[str, Any] = {"layerId": layer, "layerType": "data", "seriesType": self.series,
                                     "xAccessor": "c_time", "accessors": ["c_metric"]}
        if self.split:
            columns["c_split"] = _terms_column(self.split)
            order.insert(0, "c_split")
            vis_layer["splitAccessor"] = "c_split"
        attributes = {
            "title": self.title, "visualizationType": "lnsXY", "type": "lens",
            "references": [{"type": "index-pattern", "id": self.view_id,
                            "name": f"indexpattern-datasource-layer-{layer}"}],
            "state": {
                "visualization": {"legend": {"isVisible": True, "position": "right"},
                                  "valueLabels": "hide", "preferredSeriesType": self.series,
                                  "layers": [vis_layer]},
                "query": {"query": "", "language": "kuery"}, "filters": [],
                "datasourceStates": {"formBased": {"layers": {layer: {"columnOrder": order,
                                                                      "columns": columns}}}},
            },
        }
        return {"version": _PANEL_VERSION, "type": "lens",
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": self.panel},
                "panelIndex": self.panel,
                "embeddableConfig": {"attributes": attributes, "enhancements": {}},
                "title": self.title}

    def references(self) -> list[dict[str, Any]]:
        return [{"type": "index-pattern", "id": self.view_id,
                 "name": f"{self.panel}:indexpattern-datasource-layer-l_{self.panel}"}]


def _search_panel(panel: str, x: int, y: int, w: int = 48, h: int = 15) -> dict[str, Any]:
    return {"version": _PANEL_VERSION, "type": "search",
            "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel}, "panelIndex": panel,
            "embeddableConfig": {"enhancements": {}}, "panelRefName": f"panel_{panel}"}


# --- the set --------------------------------------------------------------------------------
def saved_objects(prefix: str = "faultwarden") -> list[dict[str, Any]]:
    events, incidents = f"{prefix}-events", f"{prefix}-incidents"
    errors, open_incidents = f"{prefix}-errors", f"{prefix}-open-incidents"
    charts = [
        LensXY("p1", "Events by log level", events, "count", None, "log.level"),
        LensXY("p2", "Training loss by run", events, "average", "ml.loss", "labels.run_id", "line"),
        LensXY("p3", "Incidents by fault", incidents, "count", None, "fault"),
        LensXY("p4", "Steps per run", events, "max", "ml.step", "labels.run_id", "line"),
    ]
    panels = [c.panel_json(x=24 * (i % 2), y=15 * (i // 2)) for i, c in enumerate(charts)]
    panels += [_search_panel("p5", 0, 30), _search_panel("p6", 0, 45)]
    references = [r for c in charts for r in c.references()]
    references += [{"type": "search", "id": open_incidents, "name": "p5:panel_p5"},
                   {"type": "search", "id": errors, "name": "p6:panel_p6"}]
    dashboard = {
        "type": "dashboard", "id": f"{prefix}-overview", "coreMigrationVersion": _CORE_MIGRATION,
        "typeMigrationVersion": "8.7.0", "references": references,
        "attributes": {
            "title": f"{prefix}: overview", "description": "Training and inference jobs watched by faultwarden",
            "version": 1, "timeRestore": False,
            "optionsJSON": _dumps({"useMargins": True, "syncColors": False, "syncCursor": True,
                                   "syncTooltips": False, "hidePanelTitles": False}),
            "panelsJSON": _dumps(panels),
            "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps({"query": {"query": "", "language": "kuery"},
                                                                  "filter": []})},
        },
    }
    return [
        _data_view(events, f"{prefix}-events-*", f"{prefix} events"),
        _data_view(incidents, f"{prefix}-incidents", f"{prefix} incidents"),
        _search(errors, events, f"{prefix}: errors and unparsed lines",
                "log.level:(error or critical) or tags:parse_error",
                ["host.name", "service.name", "labels.run_id", "log.level", "error.type", "message"]),
        _search(open_incidents, incidents, f"{prefix}: open incidents",
                "status:(open or acting) and not acknowledged:true",
                ["fault", "severity", "status", "rule", "count", "message"]),
        dashboard,
    ]


def to_ndjson(objects: Iterable[dict[str, Any]]) -> str:
    return "".join(_dumps(o) + "\n" for o in objects)


def referenced_fields(objects: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The fields each data view (by title) must have for these objects to work."""
    titles = {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}
    out: dict[str, set[str]] = {t: set() for t in titles.values()}

    def add(view_id: str, fields: Iterable[str]) -> None:
        out[titles[view_id]].update(f for f in fields if f and f != "___records___")

    for obj in objects:
        attrs = obj["attributes"]
        if obj["type"] == "index-pattern":
            add(obj["id"], [attrs["timeFieldName"]])
        elif obj["type"] == "search":
            view = obj["references"][0]["id"]
            source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
            add(view, attrs["columns"] + [s[0] for s in attrs["sort"]]
                + _KQL_FIELD.findall(source["query"]["query"]))
        elif obj["type"] == "dashboard":
            for panel in json.loads(attrs["panelsJSON"]):
                lens = panel.get("embeddableConfig", {}).get("attributes")
                if not lens:
                    continue
                view = lens["references"][0]["id"]
                for layer in lens["state"]["datasourceStates"]["formBased"]["layers"].values():
                    add(view, [c.get("sourceField") for c in layer["columns"].values()])
    return out


# --- import ---------------------------------------------------------------------------------
class KibanaError(Exception):
    """The import failed; the message is one line naming the Kibana URL."""


@dataclass
class ImportResult:
    success_count: int
    errors: list[dict[str, Any]]


def import_url(base_url: str, space: str = "default") -> str:
    base = base_url.rstrip("/")
    space_part = "" if space in ("", "default") else f"/s/{space}"
    return f"{base}{space_part}/api/saved_objects/_import?overwrite=true"


def import_objects(base_url: str, ndjson: str, *, space: str = "default", username: str | None = None,
                   password: str | None = None, api_key: str | None = None,
                   timeout: float = 60.0, ca_certs: str | None = None) -> ImportResult:
    """POST the objects to Kibana's saved-objects import API (multipart, `kbn-xsrf`)."""
    boundary = f"faultwarden-{uuid.uuid4().hex}"
    body = (f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="faultwarden.ndjson"\r\n'
            "Content-Type: application/ndjson\r\n\r\n").encode() + ndjson.encode() + \
        f"\r\n--{boundary}--\r\n".encode()
    headers = {"kbn-xsrf": "true", "Content-Type": f"multipart/form-data; boundary={boundary}",
               "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"ApiKey {api_key}"
    elif username:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    url = import_url(base_url, space)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    context = None
    if ca_certs:
        import ssl
        context = ssl.create_default_context(cafile=ca_certs)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:
            answer = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:500].decode("utf-8", "replace")
        if exc.code == 401:
            raise KibanaError(f"Kibana at {base_url} refused the credentials (401)") from None
        raise KibanaError(f"Kibana at {base_url} answered {exc.code}: {_message(detail)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KibanaError(f"cannot reach Kibana at {base_url}: {reason}") from None
    except ValueError:
        raise KibanaError(f"Kibana at {base_url} answered with something that is not JSON") from None
    return ImportResult(int(answer.get("successCount", 0)), list(answer.get("errors", [])))


def _message(detail: str) -> str:
    try:
        data = json.loads(detail)
        return str(data.get("message") or data.get("error") or detail)
    except ValueError:
        return detail.strip().splitlines()[0] if detail.strip() else "(no body)"
