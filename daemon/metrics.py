"""Prometheus metrics of the daemon, on 127.0.0.1:`metrics.port` when configured (off by default).

A private registry, so that tests and several daemons in one process never collide; names follow
Prometheus conventions (`_total` counters, base units).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Metrics:
    registry: object
    lines_read: object
    events_parsed: object
    parse_errors: object
    events_shipped: object
    shipping_lag_bytes: object
    findings: object
    incidents: object
    actions: object
    rule_reloads: object
    model_reloads: object

    @classmethod
    def create(cls) -> "Metrics":
        from prometheus_client import CollectorRegistry, Counter, Gauge

        r = CollectorRegistry()
        return cls(
            registry=r,
            lines_read=Counter("faultwarden_lines_read_total", "Lines read from sources", registry=r),
            events_parsed=Counter("faultwarden_events_parsed_total", "Events parsed", registry=r),
            parse_errors=Counter("faultwarden_parse_errors_total", "Lines kept as unparsed events", registry=r),
            events_shipped=Counter("faultwarden_events_shipped_total", "Events acknowledged by the sink", registry=r),
            shipping_lag_bytes=Gauge("faultwarden_shipping_lag_bytes", "Bytes read for detection but not yet shipped", registry=r),
            findings=Counter("faultwarden_findings_total", "Findings by fault", ["fault"], registry=r),
            incidents=Counter("faultwarden_incidents_opened_total", "Incidents opened by fault", ["fault"], registry=r),
            actions=Counter("faultwarden_actions_total", "Actions by name and outcome", ["action", "outcome"], registry=r),
            rule_reloads=Counter("faultwarden_rule_reloads_total", "Rule reloads by result", ["result"], registry=r),
            model_reloads=Counter("faultwarden_model_reloads_total", "Anomaly model reloads (SIGHUP) by result",
                                  ["result"], registry=r),
        )

    def serve(self, port: int, host: str = "127.0.0.1"):
        from prometheus_client import start_http_server

        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return server
