"""Shipping: events and incidents into Elasticsearch, at least once, nothing lost or doubled.

    sink = make_sink(config, on_shipped=cursor.commit)   # Elasticsearch, or the local stand-in
    sink.submit(event, file_id, end)                      # on_shipped(file_id, end) after the ack
    sink.close(timeout=30)

    setup(client, prefix)                                 # templates, ILM where present, indices
    IncidentIndex(client, prefix).upsert(incident)        # one document per incident id

Heavy imports (elasticsearch, tenacity) happen inside functions, so importing this is cheap.
"""
from faultwarden.daemon.ship.client import ShipError, connect, explain
from faultwarden.daemon.ship.documents import Document, document_id, to_document
from faultwarden.daemon.ship.files import file_identity, ship_files
from faultwarden.daemon.ship.incidents import IncidentIndex, IncidentNotFound
from faultwarden.daemon.ship.sink import ElasticsearchSink, LocalSink, ShipStats, make_sink
from faultwarden.daemon.ship.templates import Capabilities, SetupReport, probe, setup

__all__ = [
    "Capabilities", "Document", "ElasticsearchSink", "IncidentIndex", "IncidentNotFound",
    "LocalSink", "SetupReport", "ShipError", "ShipStats", "connect", "document_id", "explain",
    "file_identity", "make_sink", "probe", "setup", "ship_files", "to_document",
]
