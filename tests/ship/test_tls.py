"""Shipping over real TLS with basic auth: nginx (tls.py) with a self-signed CA and an htpasswd
user in front of the test node. With the CA and the password configured, events arrive; a wrong
CA or a wrong password is one clear line, and the daemon goes on detecting and notifying."""
from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
import yaml

from .helpers import FAULTWARDEN, Service, clean_env, count, json_lines, service_config, wait_for
from .tls import nginx_binary, start_tls_front

pytestmark = pytest.mark.es
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def front(es_url, tmp_path_factory, unavailable):
    if nginx_binary() is None:
        unavailable("nginx is not installed", "Debian's nginx-light; scripts/install-test-deps.sh installs it")
    tls = start_tls_front(tmp_path_factory.mktemp("nginx"), es_url, PASSWORD)
    yield tls
    tls.stop()


def ship_config(tmp_path, front, prefix, ca=None):
    path = tmp_path / "faultwarden.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "elasticsearch": {
        "hosts": [front.url], "ca_certs": str(ca or front.ca), "username": front.user, "index_prefix": prefix}}))
    return path


def ship(config, *paths, password=PASSWORD) -> subprocess.CompletedProcess:
    return subprocess.run([*FAULTWARDEN, "ship", "--config", str(config), "--setup", *map(str, paths)],
                          capture_output=True, text=True, timeout=120,
                          env=clean_env(FAULTWARDEN_ES_PASSWORD=password))


def write_log(tmp_path, n=50):
    log = tmp_path / "train.log"
    log.write_text(json_lines(0, n))
    return log


def test_the_front_really_asks_for_the_ca_and_a_password(front):
    context = ssl.create_default_context(cafile=str(front.ca))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{front.url}/_cluster/health", context=context, timeout=30)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{front.url}/_cluster/health", timeout=30,
                               context=ssl.create_default_context(cafile=str(front.other_ca)))


def test_ships_over_tls_with_the_ca_and_the_password(es, front, prefix, tmp_path):
    done = ship(ship_config(tmp_path, front, prefix), write_log(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"50 events from 1 file(s) to {front.url}: 50 shipped" in done.stdout
    assert count(es, prefix, refresh=True) == 50  # asked of the node itself, not through nginx


def test_a_wrong_ca_is_one_clear_line(front, prefix, tmp_path):
    done = ship(ship_config(tmp_path, front, prefix, ca=front.other_ca), write_log(tmp_path))
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"faultwarden: TLS to Elasticsearch at {front.url} failed "
                           "(check elasticsearch.ca_certs): "), line
    assert "certificate verify failed" in line


def test_a_wrong_password_is_one_clear_line(front, prefix, tmp_path):
    done = ship(ship_config(tmp_path, front, prefix), write_log(tmp_path), password="wrong")
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"faultwarden: Elasticsearch at {front.url} refused the credentials (401): "), line


def _daemon(tmp_path, front, prefix, webhook, password):
    config, logs = service_config(
        tmp_path, front.url, prefix, elasticsearch={"ca_certs": str(front.ca), "username": front.user},
        notify={"webhooks": [{"url": webhook.url, "min_severity": "info"}]})
    (logs / "train.log").write_text(json_lines(0, 200, nan_at=[150]))
    return Service(config, tmp_path / "daemon.out", env=clean_env(FAULTWARDEN_ES_PASSWORD=password))


def test_the_daemon_ships_over_tls(es, front, prefix, tmp_path, webhook):
    daemon = _daemon(tmp_path, front, prefix, webhook, PASSWORD)
    try:
        wait_for(lambda: count(es, prefix) >= 200 or not daemon.alive(), timeout=120,
                 what="200 events shipped through nginx", interval=0.2)
        webhook.wait_for(lambda b: b.get("fault") == "nan_inf")
    finally:
        assert daemon.stop() == 0, daemon.output()[-3000:]
    assert count(es, prefix, refresh=True) == 200
    assert "held up" not in daemon.output()


def test_with_a_wrong_password_the_daemon_says_so_once_and_goes_on_detecting(front, prefix, tmp_path, webhook):
    daemon = _daemon(tmp_path, front, prefix, webhook, "wrong")
    try:
        body = webhook.wait_for(lambda b: b.get("fault") == "nan_inf")
        assert body["source"]["line"] == 151
        held = wait_for(lambda: _held_up(daemon.output()) or not daemon.alive(), timeout=60,
                        what="the line saying why shipping is held up", interval=0.2)
    finally:
        assert daemon.stop() == 0, daemon.output()[-3000:]
    first = held[0]
    assert first["level"] == "error"
    assert first["reason"].startswith(f"Elasticsearch at {front.url} refused the credentials (401): check "
                                      "elasticsearch.username and FAULTWARDEN_ES_PASSWORD")
    assert "Traceback" not in daemon.output()


def _held_up(output: str) -> list[dict]:
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [r for r in records if r.get("event", "").startswith("shipping to Elasticsearch is held up")]
