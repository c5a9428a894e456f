"""`faultwarden ship` and `faultwarden incidents`, run as the user runs them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from faultwarden.daemon.cli import cli
from faultwarden.daemon.incidents import IncidentBook
from faultwarden.daemon.ship import IncidentIndex, setup

from .proxy import EsProxy
from .test_incident_index import finding

FAULTWARDEN = [sys.executable, "-m", "faultwarden.daemon.cli"]


def write_config(tmp_path: Path, url: str | None, prefix: str = "fwtest") -> Path:
    data = {"state_dir": str(tmp_path / "state"),
            "elasticsearch": {"index_prefix": prefix, **({"hosts": [url]} if url else {})}}
    path = tmp_path / "faultwarden.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAULTWARDEN_ES_")}
    return subprocess.run([*FAULTWARDEN, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.es
def test_ship_twice_ships_nothing_new(any_es, prefix, tmp_path):
    es, es_url = any_es.client, any_es.url
    log = tmp_path / "train.log"
    lines = [json.dumps({"msg": f"step {i}", "loss": 1.0 / (i + 1), "step": i}) for i in range(40)]
    lines[5] = '{"msg": "step 5", "loss": NaN, "step": 5}'
    lines.append("Traceback (most recent call last):\n  File \"train.py\", line 3\nRuntimeError: boom")
    log.write_text("\n".join(lines) + "\n")
    config = write_config(tmp_path, es_url, prefix)

    first = run("ship", "--config", str(config), "--setup", str(log))
    assert first.returncode == 0, first.stderr
    assert f"templates {prefix}-events, {prefix}-incidents installed" in first.stdout
    assert "41 events from 1 file(s)" in first.stdout and "41 shipped, 0 already there, 0 dead-lettered" in first.stdout

    again = run("ship", "--config", str(config), str(log))
    assert again.returncode == 0, again.stderr
    assert "0 shipped, 41 already there, 0 dead-lettered" in again.stdout
    es.indices.refresh(index=f"{prefix}-events-*")
    assert es.count(index=f"{prefix}-events-*")["count"] == 41
    nan = es.search(index=f"{prefix}-events-*", query={"term": {"ml.non_finite": "ml.loss"}})["hits"]["hits"]
    assert [h["_source"]["message"] for h in nan] == ["step 5"]


def test_unreachable_elasticsearch_is_one_line_naming_the_host(tmp_path):
    dead = EsProxy("http://127.0.0.1:9")  # bound, never listening: connections are refused
    try:
        config = write_config(tmp_path, dead.url)
        log = tmp_path / "a.log"
        log.write_text("hello\n")
        done = run("ship", "--config", str(config), str(log))
    finally:
        dead.close()
    assert done.returncode == 1
    assert done.stderr.strip() == f"faultwarden: cannot reach Elasticsearch at {dead.url}: connection refused"
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.es
def test_a_wrong_password_is_one_line_naming_the_host(tmp_path, proxy):
    proxy.fail_all = 401  # what a node with security answers to bad credentials
    proxy.start()
    config = write_config(tmp_path, proxy.url)
    done = run("ship", "--config", str(config), "--setup")
    assert done.returncode == 1
    assert done.stderr.startswith(f"faultwarden: Elasticsearch at {proxy.url} refused the credentials (401)")
    assert len(done.stderr.strip().splitlines()) == 1


def test_ship_without_elasticsearch_configured_says_so(tmp_path):
    done = run("ship", "--config", str(write_config(tmp_path, None)), "x.log")
    assert done.returncode == 2 and "elasticsearch.hosts" in done.stderr


def _book_with_incidents(tmp_path: Path) -> tuple[Path, list]:
    book = IncidentBook(tmp_path / "state" / "incidents.json")
    oom = book.record(finding(1_767_225_600.0)).incident
    hang = book.record(finding(1_767_225_700.0, run="r2", rule="training-hang", fault="hang")).incident
    book.save()
    return write_config(tmp_path, None), [oom, hang]


def test_incidents_list_show_ack_silence_on_the_local_book(tmp_path):
    config, (oom, hang) = _book_with_incidents(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(cli, ["incidents", "list", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert oom.id in listed.output and hang.id in listed.output and "cuda_oom" in listed.output

    shown = runner.invoke(cli, ["incidents", "show", "--config", str(config), "--json", oom.id[:6]])
    assert json.loads(shown.output)["id"] == oom.id

    acked = runner.invoke(cli, ["incidents", "ack", "--config", str(config), oom.id])
    assert acked.exit_code == 0 and f"acknowledged {oom.id}" in acked.output
    assert IncidentBook(tmp_path / "state" / "incidents.json").get(oom.id).acknowledged

    silenced = runner.invoke(cli, ["incidents", "silence", "--config", str(config), "--fault", "hang",
                                   "--match", "labels.run_id=r2", "--for", "1h30m", "--comment", "known"])
    assert silenced.exit_code == 0, silenced.output
    assert "(1 open incident(s) silenced now)" in silenced.output
    book = IncidentBook(tmp_path / "state" / "incidents.json")
    assert book.get(hang.id).status == "silenced" and book.get(oom.id).status == "open"
    (s,) = book.silences
    assert s.matchers == {"fault": "hang", "labels.run_id": "r2"} and s.comment == "known"


def test_incidents_usage_errors_exit_2(tmp_path):
    config, _ = _book_with_incidents(tmp_path)
    runner = CliRunner()
    bad = runner.invoke(cli, ["incidents", "silence", "--config", str(config), "--fault", "hang", "--for", "soon"])
    assert bad.exit_code == 2 and "expected a duration" in bad.output
    nothing = runner.invoke(cli, ["incidents", "silence", "--config", str(config), "--for", "1h"])
    assert nothing.exit_code == 2 and "--rule, --fault or --match" in nothing.output
    missing = runner.invoke(cli, ["incidents", "show", "--config", str(config), "ffffffff"])
    assert missing.exit_code == 1 and "no incident 'ffffffff'" in missing.output


@pytest.mark.es
def test_incidents_from_elasticsearch(es, es_url, prefix, tmp_path):
    setup(es, prefix)
    book = IncidentBook()
    inc = book.record(finding(1_767_225_600.0)).incident
    IncidentIndex(es, prefix, refresh=True).upsert(inc)
    config = write_config(tmp_path, es_url, prefix)
    runner = CliRunner()
    listed = runner.invoke(cli, ["incidents", "list", "--es", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert inc.id in listed.output
    acked = runner.invoke(cli, ["incidents", "ack", "--es", "--config", str(config), inc.id[:10]])
    assert acked.exit_code == 0, acked.output
    assert es.get(index=f"{prefix}-incidents", id=inc.id)["_source"]["acknowledged"] is True


@pytest.mark.es
def test_ship_parses_each_file_as_its_source_says_and_redacts(es, es_url, prefix, tmp_path):
    """`ship` applies the configured source of each file (here its run id and redaction), as the
    daemon and `diagnose` do: the token never reaches Elasticsearch."""
    token = "hf_" + "Qw7" * 12
    log = tmp_path / "logs" / "push.log"
    log.parent.mkdir()
    log.write_text(json.dumps({"message": f"uploading with token {token}", "step": 1}) + "\n"
                   + f"2024-05-01 12:00:00,000 - hub - ERROR - 401 for https://bob:hunter2@hub.example.org\n")
    config = write_config(tmp_path, es_url, prefix)
    data = yaml.safe_load(config.read_text())
    data["sources"] = [{"paths": [str(tmp_path / "logs" / "*.log")], "run_id": "run-7", "redact": {}}]
    config.write_text(yaml.safe_dump(data))
    done = run("ship", "--config", str(config), "--setup", str(log))
    assert done.returncode == 0, done.stderr
    es.indices.refresh(index=f"{prefix}-events-*")
    docs = [h["_source"] for h in es.search(index=f"{prefix}-events-*", sort=[{"log.offset": "asc"}])["hits"]["hits"]]
    assert [d["message"] for d in docs] == ["uploading with token [redacted]",
                                            "401 for https://[redacted]@hub.example.org"]
    assert {d["labels.run_id"] for d in docs} == {"run-7"}
    assert "hunter2" not in json.dumps(docs) and token not in json.dumps(docs)
