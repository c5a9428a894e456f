"""Index setup on the real node: idempotent, typed, and a chatty log cannot explode the mapping."""
from __future__ import annotations

import pytest

from faultwarden.daemon.ship import ElasticsearchSink, setup
from faultwarden.daemon.ship.templates import EVENT_FIELDS, FIELDS_LIMIT, INCIDENT_FIELDS

from .helpers import ship, training_events

pytestmark = pytest.mark.es


def _leaf_types(caps: dict, names) -> dict[str, str]:
    return {n: next(iter(caps[n])) for n in names if n in caps}


def test_setup_is_idempotent_and_keeps_the_incidents(any_es, prefix):
    es = any_es.client
    first = setup(es, prefix)
    assert first.templates == [f"{prefix}-events", f"{prefix}-incidents"]
    assert first.incidents_index_created
    assert first.capabilities.ilm is False  # the test distribution has no ILM: probed, not assumed
    es.index(index=f"{prefix}-incidents", id="inc-1", document={"id": "inc-1", "fault": "hang"}, refresh=True)
    template_before = es.indices.get_index_template(name=f"{prefix}-events")["index_templates"][0]
    second = setup(es, prefix)
    assert not second.incidents_index_created
    assert es.get(index=f"{prefix}-incidents", id="inc-1")["_source"]["fault"] == "hang"
    assert es.indices.get_index_template(name=f"{prefix}-events")["index_templates"][0] == template_before


def test_every_declared_field_is_mapped_with_its_type(any_es, prefix):
    es = any_es.client
    setup(es, prefix)
    es.indices.create(index=f"{prefix}-events-2026.01.01")
    caps = es.field_caps(index=f"{prefix}-events-2026.01.01", fields=list(EVENT_FIELDS))["fields"]
    assert _leaf_types(caps, EVENT_FIELDS) == {n: m["type"] for n, m in EVENT_FIELDS.items()}
    inc_fields = [n for n, m in INCIDENT_FIELDS.items() if m.get("enabled", True)]
    caps = es.field_caps(index=f"{prefix}-incidents", fields=inc_fields)["fields"]
    assert _leaf_types(caps, inc_fields) == {n: INCIDENT_FIELDS[n]["type"] for n in inc_fields}


def test_unknown_fields_map_as_keyword_labels_and_double_metrics(any_es, settings, prefix, tmp_path):
    es, es_url = any_es.client, any_es.url
    event = {**training_events(1)[0], "labels.team": "vision", "labels.gpu_count": 8,
             "ml.custom_metric": 3, "worker": "w-7"}
    sink = ElasticsearchSink(settings(es_url), state_dir=tmp_path)
    ship(sink, [event, {**event, "log.offset": 1, "ml.custom_metric": 3.5}])
    assert sink.close(timeout=60) and sink.stats.shipped == 2
    names = ["labels.team", "labels.gpu_count", "ml.custom_metric", "worker"]
    caps = es.field_caps(index=f"{prefix}-events-*", fields=names)["fields"]
    assert _leaf_types(caps, names) == {"labels.team": "keyword", "labels.gpu_count": "keyword",
                                        "ml.custom_metric": "double", "worker": "keyword"}


def test_a_chatty_log_cannot_explode_the_mapping(any_es, settings, prefix, tmp_path):
    es, es_url = any_es.client, any_es.url
    chatty = {**training_events(1)[0], **{f"labels.k{i}": "v" for i in range(FIELDS_LIMIT + 500)}}
    sink = ElasticsearchSink(settings(es_url), state_dir=tmp_path)
    ship(sink, [chatty])
    assert sink.close(timeout=60)
    assert (sink.stats.shipped, sink.stats.dead_lettered) == (1, 0)  # stored, not refused
    (mapping,) = es.indices.get_mapping(index=f"{prefix}-events-*").values()
    labels = mapping["mappings"]["properties"]["labels"]["properties"]
    assert len(labels) < FIELDS_LIMIT
    es.indices.refresh(index=f"{prefix}-events-*")
    (hit,) = es.search(index=f"{prefix}-events-*")["hits"]["hits"]
    assert hit["_source"][f"labels.k{FIELDS_LIMIT + 499}"] == "v"  # kept in _source
