"""The metrics endpoint answers on loopback with the daemon's counters."""
import urllib.request

from faultwarden.daemon.metrics import Metrics


def test_metrics_are_served_on_loopback():
    m = Metrics.create()
    m.events_parsed.inc(3)
    m.incidents.labels(fault="nan_inf").inc()
    server = m.serve(0)
    try:
        port = server.server_address[1]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
    assert "faultwarden_events_parsed_total 3.0" in text
    assert 'faultwarden_incidents_opened_total{fault="nan_inf"} 1.0' in text
