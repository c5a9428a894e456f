"""Kibana: the import call against a local HTTP server that records it (Kibana cannot run here),
the shipped NDJSON in step with the generator, and every field the objects use mapped by the
index templates on the real node."""
from __future__ import annotations

import base64
import json
import threading
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from faultwarden.daemon.cli import cli
from faultwarden.daemon.ship import setup
from faultwarden.daemon.ship.kibana import referenced_fields, saved_objects, to_ndjson

ROOT = Path(__file__).resolve().parents[2]


class FakeKibana:
    """Records each request; answers like Kibana's import API (or with a chosen status)."""

    def __init__(self, status: int = 200):
        self.requests: list[dict] = []
        self.status = status
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers),
                                      "body": body})
                if fake.status != 200:
                    answer = {"statusCode": fake.status, "error": "Unauthorized", "message": "bad credentials"}
                else:
                    count = sum(1 for line in fake.ndjson_of(fake.requests[-1]).splitlines() if line.strip())
                    answer = {"success": True, "successCount": count, "errors": []}
                data = json.dumps(answer).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def ndjson_of(request: dict) -> str:
        """The `file` part of the multipart body, parsed as a mail library would."""
        head = f"Content-Type: {request['headers']['Content-Type']}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + request["body"])
        (part,) = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "file"]
        return part.get_payload(decode=True).decode()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def kibana():
    k = FakeKibana()
    yield k
    k.close()


def config_file(tmp_path: Path, **sections) -> Path:
    path = tmp_path / "faultwarden.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), **sections}))
    return path


def test_import_posts_the_objects_as_kibana_expects(kibana, tmp_path, monkeypatch):
    monkeypatch.setenv("FAULTWARDEN_ES_PASSWORD", "s3cret")
    config = config_file(tmp_path, kibana={"url": kibana.url, "space": "ml-team"},
                         elasticsearch={"username": "fw_writer", "index_prefix": "acme"})
    result = CliRunner().invoke(cli, ["kibana", "import", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"imported 5 saved object(s) into Kibana at {kibana.url} (space ml-team)" in result.output
    (req,) = kibana.requests
    assert req["path"] == "/s/ml-team/api/saved_objects/_import?overwrite=true"
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert headers["kbn-xsrf"] == "true"
    assert headers["content-type"].startswith("multipart/form-data; boundary=")
    assert headers["authorization"] == "Basic " + base64.b64encode(b"fw_writer:s3cret").decode()
    sent = kibana.ndjson_of(req)
    assert sent == to_ndjson(saved_objects("acme"))
    assert {json.loads(line)["id"] for line in sent.splitlines()} == {
        "acme-events", "acme-incidents", "acme-errors", "acme-open-incidents", "acme-overview"}


def test_import_into_the_default_space_with_an_api_key_and_a_file(kibana, tmp_path, monkeypatch):
    monkeypatch.setenv("FAULTWARDEN_ES_API_KEY", "a2V5OnNlY3JldA==")
    ndjson = ROOT / "docker/kibana/faultwarden.ndjson"
    config = config_file(tmp_path)
    result = CliRunner().invoke(cli, ["kibana", "import", "--config", str(config), "--kibana-url",
                                      kibana.url + "/", "--file", str(ndjson)])
    assert result.exit_code == 0, result.output
    (req,) = kibana.requests
    assert req["path"] == "/api/saved_objects/_import?overwrite=true"
    assert {k.lower(): v for k, v in req["headers"].items()}["authorization"] == "ApiKey a2V5OnNlY3JldA=="
    assert kibana.ndjson_of(req) == ndjson.read_text()


def test_refused_credentials_and_no_kibana_are_one_line(tmp_path):
    refusing = FakeKibana(status=401)
    try:
        config = config_file(tmp_path, kibana={"url": refusing.url})
        result = CliRunner().invoke(cli, ["kibana", "import", "--config", str(config)])
    finally:
        refusing.close()
    assert result.exit_code == 1
    assert result.output.strip() == f"faultwarden: Kibana at {refusing.url} refused the credentials (401)"
    gone = CliRunner().invoke(cli, ["kibana", "import", "--config", str(config)])  # the server is closed now
    assert gone.exit_code == 1
    assert gone.output.startswith(f"faultwarden: cannot reach Kibana at {refusing.url}: ")
    assert len(gone.output.strip().splitlines()) == 1
    none = CliRunner().invoke(cli, ["kibana", "import", "--config", str(config_file(tmp_path))])
    assert none.exit_code == 2 and "--kibana-url" in none.output


def test_the_shipped_ndjson_is_what_the_generator_builds():
    """docker/kibana/faultwarden.ndjson is `faultwarden kibana export` for the default prefix."""
    shipped = (ROOT / "docker/kibana/faultwarden.ndjson").read_text()
    assert shipped == to_ndjson(saved_objects("faultwarden"))
    for obj in map(json.loads, shipped.splitlines()):
        for key in ("panelsJSON", "optionsJSON"):
            if key in obj["attributes"]:
                json.loads(obj["attributes"][key])  # JSON strings inside JSON must parse
        refs = {r["name"] for r in obj["references"]}
        if obj["type"] == "dashboard":
            panels = json.loads(obj["attributes"]["panelsJSON"])
            for p in panels:
                if "panelRefName" in p:
                    assert f"{p['panelIndex']}:{p['panelRefName']}" in refs


@pytest.mark.es
def test_every_field_the_objects_use_is_mapped_by_the_templates(es):
    prefix = f"fwtest-{uuid.uuid4().hex[:8]}"
    try:
        setup(es, prefix)
        es.indices.create(index=f"{prefix}-events-2026.01.01")  # empty: mapped by the template alone
        for pattern, fields in referenced_fields(saved_objects(prefix)).items():
            assert fields, pattern
            caps = es.field_caps(index=pattern, fields=sorted(fields))["fields"]
            unmapped = sorted(f for f in fields if f not in caps or "object" in caps[f])
            assert unmapped == [], f"{pattern}: {unmapped}"
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{prefix}-*")
        for t in ("events", "incidents"):
            es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-{t}")
