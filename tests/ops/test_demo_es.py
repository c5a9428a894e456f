"""`faultwarden demo --es-url`: the demo's events and its incident land in a real Elasticsearch."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.es


def test_demo_ships_its_run_and_incident(tmp_path, es, es_url):
    done = subprocess.run([sys.executable, "-m", "faultwarden.daemon.cli", "demo", "--es-url", es_url,
                           "--dir", str(tmp_path), "--steps", "40", "--save-every", "10", "--nan-at-step", "25"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "restored checkpoint step 20" in done.stdout and "job completed" in done.stdout
    book = json.loads((tmp_path / "state/incidents.json").read_text())
    # One fault, one recovery: the NaN loss's incident acts. When the job logs three NaN gradient
    # norms before the stop lands, `grad-norm-not-finite` opens too and rides along (covered).
    assert {i["fault"] for i in book["incidents"]} == {"nan_inf"}, \
        json.dumps(book["incidents"], indent=1, default=str)[:4000] + "\n" + done.stdout
    (incident,) = [i for i in book["incidents"] if i["rule"] == "nan-loss"]
    for rider in book["incidents"]:
        if rider is not incident:
            assert [(a["outcome"], a["by"]) for a in rider["actions"]] == [("covered", incident["id"])]
    run_id = incident["group"]["labels.run_id"]
    es.indices.refresh(index="faultwarden-*")
    steps = es.count(index="faultwarden-events-*", query={"bool": {"filter": [
        {"term": {"labels.run_id": run_id}}, {"exists": {"field": "ml.step"}}]}})["count"]
    assert steps >= 40  # both attempts' steps, from 0 and from the restored checkpoint
    nan = es.search(index="faultwarden-events-*", query={"bool": {"filter": [
        {"term": {"labels.run_id": run_id}}, {"term": {"ml.non_finite": "ml.loss"}}]}})["hits"]["hits"]
    assert nan and nan[0]["_source"]["ml.loss"] is None
    shipped = es.get(index="faultwarden-incidents", id=incident["id"])["_source"]
    assert shipped["fault"] == "nan_inf" and shipped["status"] == "resolved"
