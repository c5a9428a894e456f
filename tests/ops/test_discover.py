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
