"""Discover links: rison as Kibana reads it, and the data view where each Kibana version wants it."""
from urllib.parse import unquote

from faultwarden.daemon.discover import discover_url, rison


def test_rison_quotes_what_must_be_quoted():
    assert rison({"a": "plain", "b": "two words", "c": "it's!", "d": [1, True], "e": "2024-01-01"}) == \
        "(a:plain,b:'two words',c:'it!'s!!',d:!(1,!t),e:'2024-01-01')"


def test_kibana_8_15_and_later_use_data_source():
    url = unquote(discover_url("http://kb:5601/", "9.2.4", "faultwarden-events",
                               {"labels.run_id": "r1", "host.name": "gpu-7"}, 1_700_000_000, 1_700_000_060))
    assert url.startswith("http://kb:5601/app/discover#/?_g=(time:(from:'2023-11-14T22:03:20.000Z',"
                          "to:'2023-11-14T22:19:20.000Z'))")
    assert "_a=(dataSource:(dataViewId:faultwarden-events,type:dataView)," in url
    assert "query:'host.name:\"gpu-7\" and labels.run_id:\"r1\"'" in url


def test_older_kibana_uses_index():
    url = unquote(discover_url("http://kb:5601", "8.14.3", "faultwarden-events", {"labels.run_id": "r1"}, 0, 0))
    assert "_a=(index:faultwarden-events,query:" in url and "dataSource" not in url


def test_incidents_and_their_notifications_carry_the_link(tmp_path, webhook):
    """A real `run -- CMD` with a Kibana configured: the webhook body has the Discover link."""
    import subprocess
    import sys

    import yaml

    config = tmp_path / "f.yaml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(tmp_path / "state"), "kibana": {"url": "http://kibana:5601", "version": "9.2.4"},
        "notify": {"webhooks": [{"url": webhook.url, "min_severity": "info"}]},
        "actions": {"restart": {"max_restarts": 0}}}))
    job = "import json; print(json.dumps({'step': 3, 'loss': float('nan')}), flush=True)"
    done = subprocess.run([sys.executable, "-m", "faultwarden.daemon.cli", "run", "--config", str(config), "--dry-run", "--",
                           sys.executable, "-c", job], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    body = webhook.wait_for(lambda b: b.get("fault") == "nan_inf")
    link = unquote(body["links"]["discover"])
    assert link.startswith("http://kibana:5601/app/discover#/?_g=(time:")
    assert "dataViewId:faultwarden-events" in link and "labels.run_id" in link
