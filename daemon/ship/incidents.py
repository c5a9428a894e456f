"""Incidents in Elasticsearch: one document per incident in `<prefix>-incidents`, document id =
incident id, so however often an incident is updated there is one document for it.

The document is `Incident.to_json()` plus `@timestamp` (= first_seen) and `acknowledged`. An
acknowledgement made in Elasticsearch (`faultwarden incidents ack --es`) survives later updates
from the daemon: each update reads the document first and never sets `acknowledged` back.

In the daemon (`from_config`, background) `upsert()` never waits on Elasticsearch nor raises: it
keeps the incident's latest state, and a writer thread stores it, retrying with back-off while
the cluster is away. The incident book in the state dir stays the daemon's own record.
"""
from __future__ import annotations

import random
import threading
import time
from typing import Any

from faultwarden.daemon import logs
from faultwarden.daemon.incidents import ACTIVE
from faultwarden.daemon.ship.documents import iso_utc
from faultwarden.daemon.ship.templates import incidents_index


class IncidentNotFound(KeyError):
    pass


class IncidentIndex:
    def __init__(self, client: Any, prefix: str = "faultwarden", refresh: bool | str = False,
                 background: bool = False, backoff_max_s: float = 30.0):
        self.client = client
        self.prefix = prefix
        self.index = incidents_index(prefix)
        # True (or "wait_for") makes a change visible to the next search (CLI, tests); the daemon
        # does not need that and leaves it off.
        self.refresh = refresh
        self.backoff_max_s = backoff_max_s
        self._pending: dict[str, dict[str, Any]] = {}  # id -> latest document not yet stored
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._blocked = False  # the last write failed in a way only a person can fix (401, TLS)
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="faultwarden-incidents", daemon=True)
            self._thread.start()

    @classmethod
    def from_config(cls, settings: Any, **kwargs: Any) -> "IncidentIndex":
        """For the daemon: `config.elasticsearch`, writing in the background."""
        from faultwarden.daemon.ship.client import connect

        kwargs.setdefault("background", True)
        return cls(connect(settings), settings.index_prefix, **kwargs)

    def document(self, incident: Any) -> dict[str, Any]:
        doc = incident.to_json()
        doc["@timestamp"] = iso_utc(incident.first_seen)
        doc["acknowledged"] = bool(getattr(incident, "acknowledged", False))
        return doc

    def upsert(self, incident: Any) -> None:
        doc = self.document(incident)  # a snapshot: the incident object changes afterwards
        if self._thread is None:
            self._store(doc)
            return
        with self._changed:
            self._pending[doc["id"]] = doc
            self._changed.notify()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every upserted incident is stored (background mode); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Store what is pending within `timeout` (not waiting at all while Elasticsearch
        refuses the credentials or the certificate), then stop the writer."""
        done = True
        if self._thread is not None:
            with self._changed:
                self._changed.wait_for(lambda: not self._pending or self._blocked, timeout)
                done = not self._pending
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        return done

    def _store(self, doc: dict[str, Any]) -> None:
        self._write(doc["id"], lambda current: {
            **doc,
            # A person's ack (from the book, or made in Elasticsearch) is never taken back.
            "acknowledged": bool(doc["acknowledged"] or current.get("acknowledged")),
            **({"acknowledged_at": current["acknowledged_at"]} if "acknowledged_at" in current else {}),
        })

    def _setup(self) -> bool:
        """Templates and index (idempotent); False once done or not ours to do (403)."""
        from elasticsearch import AuthorizationException

        from faultwarden.daemon.ship.templates import setup

        try:
            setup(self.client, self.prefix)
        except AuthorizationException:
            pass  # a writer-only user: `faultwarden ship --setup` is an admin's job
        return False

    def _run(self) -> None:
        from faultwarden.daemon.ship.client import explain, hosts_of, needs_person

        log = logs.get("faultwarden.ship")
        failures = 0
        need_setup = True  # the template first: an incident must not create an unmapped index
        while not self._stop.is_set():
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._stop.is_set())
                if self._stop.is_set():
                    return
                doc_id, doc = next(iter(self._pending.items()))
            try:
                if need_setup:
                    need_setup = self._setup()
                self._store(doc)
            except Exception as exc:
                failures += 1
                with self._changed:
                    self._blocked = needs_person(exc)
                    self._changed.notify_all()
                if failures == 1 or failures % 10 == 0:
                    log.warning("cannot store incidents in Elasticsearch yet; retrying",
                                reason=explain(exc, hosts_of(self.client)), pending=len(self._pending))
                delay = min(self.backoff_max_s, 0.5 * 2 ** min(failures - 1, 10))
                self._stop.wait(delay + random.uniform(0, 0.5))
                continue
            failures = 0
            with self._changed:
                self._blocked = False
                if self._pending.get(doc_id) is doc:  # not replaced by a newer state meanwhile
                    del self._pending[doc_id]
                self._changed.notify_all()

    def _write(self, doc_id: str, build, attempts: int = 5) -> dict[str, Any]:
        """Read-modify-write with optimistic concurrency. Whole documents go through the index
        API because the update API re-renders numbers (epoch seconds as `1.7E9`), which a date
        field then refuses; and there are no scripts on every distribution."""
        from elasticsearch import ConflictError, NotFoundError

        for _ in range(attempts):
            try:
                found = self.client.get(index=self.index, id=doc_id)
                current, guard = found["_source"], {"if_seq_no": found["_seq_no"],
                                                   "if_primary_term": found["_primary_term"]}
            except NotFoundError:
                current, guard = {}, {"op_type": "create"}
            doc = build(current)
            try:
                self.client.index(index=self.index, id=doc_id, document=doc, refresh=self.refresh, **guard)
                return doc
            except ConflictError:
                continue  # someone wrote in between: read again
        raise RuntimeError(f"incident {doc_id}: kept changing while being written")

    def get(self, incident_id: str) -> dict[str, Any]:
        """By full id or an unambiguous prefix of it (as `incidents show` accepts)."""
        from elasticsearch import NotFoundError

        try:  # a realtime get sees a document the moment it is written
            return self.client.get(index=self.index, id=incident_id)["_source"]
        except NotFoundError:
            pass
        hits = self.client.search(index=self.index, query={"prefix": {"id": incident_id}},
                                  size=2)["hits"]["hits"]
        if len(hits) != 1:
            raise IncidentNotFound(incident_id)
        return hits[0]["_source"]

    def list(self, include_closed: bool = False, size: int = 100) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"match_all": {}}
        if not include_closed:
            query = {"terms": {"status": list(ACTIVE)}}
        hits = self.client.search(index=self.index, query=query, size=size,
                                  sort=[{"first_seen": "desc"}, {"id": "asc"}])["hits"]["hits"]
        return [h["_source"] for h in hits]

    def ack(self, incident_id: str) -> dict[str, Any]:
        doc_id = self.get(incident_id)["id"]
        return self._write(doc_id, lambda current: {
            **current, "acknowledged": True,
            "acknowledged_at": current.get("acknowledged_at") or iso_utc(time.time())})
