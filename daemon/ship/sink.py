"""Sinks: where events go for investigation. At least once, nothing lost, nothing doubled.

`ElasticsearchSink` runs a few sender threads. The caller (the tailer) `submit()`s events with
the file they came from and the offset just past them; submit turns each into its document and
adds it to the batch being formed, which goes onto the send queue when full (by count or bytes);
a sender that finds the queue empty for `flush_interval_s` takes the batch as it is. Each batch
is one `_bulk` request of `create` ops with deterministic ids, and every document is resolved:

    2xx            shipped
    409            already there (a replay): counts as delivered
    429, 5xx       retried, with exponential back-off and jitter, until delivered
    other 4xx      refused for good: written to the dead-letter file, the stream goes on
    no answer      (connection refused, timeout, 401...): the whole rest is retried

`max_requests_in_flight` batches are in flight at a time (4 by default): one shard indexes a
bulk on one thread, and while one answer travels back and is read, the others keep the node's
write threads busy. A batch is acknowledged only when it and
every batch before it are resolved: `on_shipped(file_id, end)` is called in submit order, so the
caller's shipping cursor never runs ahead of what Elasticsearch holds, and the offsets it
reports only grow. A dead cluster makes shipping wait (back-off capped at
`backoff_max_s`); `submit()` then blocks once `max_in_flight_events` are waiting, which the
caller turns into holding back its shipping cursor — never into dropping events.

`LocalSink` is the stand-in when no Elasticsearch is configured: it counts and acknowledges.
"""
from __future__ import annotations

import queue
import random
import socket
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from faultwarden.daemon import logs
from faultwarden.daemon.ship.client import BULK_ANSWER_FIELDS
from faultwarden.daemon.ship.deadletter import DeadLetter
from faultwarden.daemon.ship.documents import Document, to_document

OnShipped = Callable[[str, int], None]
_CLOSE = object()
LOG_EVERY = 10  # failed attempts between two "held up" lines with the same cause


@dataclass
class ShipStats:
    submitted: int = 0
    shipped: int = 0  # created now
    already_there: int = 0  # 409: delivered before (a replay)
    dead_lettered: int = 0
    retried: int = 0  # document sends that had to be repeated
    batches: int = 0

    @property
    def delivered(self) -> int:
        return self.shipped + self.already_there + self.dead_lettered

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Batch:
    """The documents of one batch, and those still waiting for a final answer."""

    def __init__(self, docs: list[Document]):
        self.docs = docs
        self.pending = docs
        self.resolved = False
        self.last_error: str | None = None
        self.cause: str | None = None  # last_error without the details that differ every time
        # The failed attempts in a row of one kind: no answer at all (down, frozen, TLS...) or
        # an answer that says "later" (429, 5xx). The back-off grows with it and starts over
        # when the kind changes, so the 429s of a cluster that just came back are not waited
        # on as long as the outage before them.
        self.unanswered = False
        self.streak = 0
        self.needs_person = False  # the failure will not go away by itself (401, 403, TLS)
        self.answers_seen = 0  # the sink's answer count when the last attempt began

    def failed(self, unanswered: bool, error: str, cause: str, needs_person: bool = False) -> None:
        if unanswered != self.unanswered:
            self.unanswered, self.streak = unanswered, 0
        self.streak += 1
        self.last_error, self.cause, self.needs_person = error, cause, needs_person


class ElasticsearchSink:
    def __init__(self, settings: Any, on_shipped: OnShipped | None = None, *,
                 state_dir: str | Path | None = None, client: Any = None,
                 host_name: str | None = None, ensure_setup: bool = True,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0,
                 concurrency: int | None = None):
        from faultwarden.daemon.ship.client import connect, hosts_of

        self.settings = settings
        self.prefix = settings.index_prefix
        self.on_shipped = on_shipped
        self._own_client = client is None
        self.client = client if client is not None else connect(settings)
        self.hosts = hosts_of(self.client)
        self.host_name = host_name or socket.gethostname()
        self.dead_letter = DeadLetter(state_dir)
        self.stats = ShipStats()
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._need_setup = ensure_setup
        self._log = logs.get("faultwarden.ship")
        self._queue: queue.SimpleQueue = queue.SimpleQueue()  # formed batches, then _CLOSE
        self._forming: list[Document] = []  # the batch being formed, in submit order
        self._forming_size = 0
        self._forming_lock = threading.Lock()
        self._idle = threading.Condition()  # guards the two counts below
        self._outstanding = 0  # submitted, not yet resolved and acknowledged
        self._room_taken = 0  # submitted, not yet resolved: what max_in_flight_events limits
        self._closed = False
        self._abort = threading.Event()  # set when close() runs out of time: stop retrying
        self._failing = False
        self._blocked = False  # the last failure needs a person (401, 403, TLS): close() will not wait
        self._logged_error: str | None = None  # the reason last logged, and failures since
        self._failures_unlogged = 0
        # Answers from the cluster so far: a sender waiting out a back-off because nothing
        # answered wakes up as soon as another sender gets an answer (the cluster is back).
        self._answers = 0
        self._wake = threading.Condition()
        self._lock = threading.Lock()  # stats, setup, the order of batches
        self._collecting = threading.Lock()  # one sender forms a batch at a time
        self._draining = False
        self._in_order: deque[_Batch] = deque()  # formed, not yet acknowledged, oldest first
        senders = concurrency if concurrency is not None else settings.max_requests_in_flight
        self._threads = [threading.Thread(target=self._run, name=f"faultwarden-ship-{i}", daemon=True)
                         for i in range(max(1, senders))]
        for thread in self._threads:
            thread.start()

    # --- the caller's side ---------------------------------------------------------------
    def submit(self, event: Mapping[str, Any], file_id: str | None = None, end: int | None = None,
               timeout: float | None = None) -> bool:
        """Queue one event. `file_id`/`end`: the source file's identity and the offset just past
        this event, reported back through `on_shipped` once delivered (None: not reported).

        Blocks while `max_in_flight_events` are unresolved; with a `timeout` returns False
        instead of queueing when still full (the caller holds its shipping cursor back)."""
        if self._closed:
            raise RuntimeError("the sink is closed")
        limit = self.settings.max_in_flight_events
        with self._idle:
            if self._room_taken >= limit and not self._idle.wait_for(
                    lambda: self._room_taken < limit, timeout):
                return False
            self._room_taken += 1
            self._outstanding += 1
            self.stats.submitted += 1
        # The document is built here, on the caller's thread, so that it overlaps with the
        # requests in flight (a sender waits on the network, not the GIL).
        doc = self._document(event, file_id, end)
        with self._forming_lock:
            self._forming.append(doc)
            self._forming_size += doc.size
            if (len(self._forming) >= self.settings.batch_events
                    or self._forming_size >= self.settings.batch_bytes):
                self._queue.put(self._form())
        return True

    def _form(self) -> _Batch:
        """The batch being formed, closed and put in line for acknowledgement (caller holds
        `_forming_lock`, so batches line up in submit order)."""
        batch = _Batch(self._forming)
        self._forming, self._forming_size = [], 0
        # A deque's append and popleft are atomic: _resolved pops under its own lock.
        self._in_order.append(batch)
        return batch

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every submitted event is resolved; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def close(self, timeout: float = 30.0) -> bool:
        """Deliver what is queued within `timeout` seconds, then stop. True if everything was
        resolved; False leaves the rest unacknowledged (the caller's cursor was not moved past
        it, so it is read and sent again next time)."""
        if not self._closed:
            self._closed = True
            with self._forming_lock:
                if self._forming:
                    self._queue.put(self._form())
                self._queue.put(_CLOSE)
        deadline = time.monotonic() + timeout
        # Waiting is pointless while Elasticsearch refuses the credentials or the certificate.
        while self.running and not self._blocked and time.monotonic() < deadline:
            for thread in self._threads:
                thread.join(min(0.1, max(0.0, deadline - time.monotonic())))
        if self.running:
            self._abort.set()  # stop retrying; a request in flight finishes or times out
            with self._wake:
                self._wake.notify_all()
            for thread in self._threads:
                thread.join(min(5.0, self.settings.request_timeout_s))
        done = self._outstanding == 0
        if not done:
            self._log.warning("shipping stopped with events not delivered; they are sent again "
                              "from the shipping cursor next time", undelivered=self._outstanding,
                              hosts=self.hosts)
        if self._own_client and not self.running:
            self.client.close()
        return done

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # --- the sender threads --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            if not self._deliver(batch):
                return  # aborted by close(): leave the rest unacknowledged
            self._resolved(batch)

    def _collect(self) -> _Batch | None:
        """The next batch: a full one from the queue, else (nothing came for flush_interval_s)
        the one being formed, as it is. None once closed and drained."""
        with self._collecting:
            while not self._draining:
                try:
                    item = self._queue.get(timeout=self.settings.flush_interval_s)
                except queue.Empty:
                    with self._forming_lock:
                        if self._forming:
                            return self._form()
                    continue
                if item is _CLOSE:
                    self._draining = True
                    break
                return item
            return None

    def _document(self, event: Mapping[str, Any], file_id: str | None, end: int | None) -> Document:
        try:
            return to_document(event, self.prefix, file_id, end, host=self.host_name)
        except Exception as exc:  # an event we cannot encode still leaves a trace, never a gap
            stand_in = {k: event.get(k) for k in ("@timestamp", "host.name", "log.file.path", "log.offset")}
            stand_in.update({"message": repr(dict(event))[:10_000], "tags": ["ship_error"],
                             "error.message": f"could not encode the event: {exc}"})
            return to_document(stand_in, self.prefix, file_id, end, host=self.host_name)

    def _deliver(self, batch: _Batch) -> bool:
        """Send until every document has a final answer; False if close() gave up first."""
        from tenacity import Retrying, retry_if_exception_type, retry_if_result, stop_when_event_set

        retrying = Retrying(
            # The attempt returns what is still pending; an unexpected error (say, the disk
            # under the dead-letter file is full) is retried too rather than ending the thread.
            retry=retry_if_result(bool) | retry_if_exception_type(Exception),
            wait=lambda state: self._backoff(batch),
            stop=stop_when_event_set(self._abort),
            sleep=lambda seconds: self._sleep(seconds, batch),
            before_sleep=lambda state: self._note_retry(batch, state),
            retry_error_callback=lambda state: batch.pending,
        )
        pending = retrying(self._attempt, batch)
        if not pending:
            self._blocked = False
        if not pending and self._failing:
            self._failing = False
            self._logged_error = None
            self._log.info("shipping to Elasticsearch again", hosts=self.hosts)
        return not pending

    def _backoff(self, batch: _Batch) -> float:
        """Exponential in the failures of one kind in a row, capped, plus jitter so that many
        daemons do not retry in step."""
        step = min(max(batch.streak, 1) - 1, 30)
        return (min(self.backoff_max_s, self.backoff_initial_s * 2 ** step)
                + random.uniform(0, self.backoff_initial_s))

    def _sleep(self, seconds: float, batch: _Batch) -> None:
        """Wait out a back-off; cut short by close() giving up, and, when nothing answered this
        batch, by another sender getting an answer."""
        with self._wake:
            self._wake.wait_for(lambda: self._abort.is_set()
                                or (batch.unanswered and self._answers != batch.answers_seen), timeout=seconds)

    def _answered(self) -> None:
        with self._wake:
            self._answers += 1
            self._wake.notify_all()

    def _attempt(self, batch: _Batch) -> list[Document]:
        if self._abort.is_set():
            return batch.pending
        batch.answers_seen = self._answers
        if self._need_setup and not self._setup(batch):
            return batch.pending
        retry: list[Document] = []
        refused: list[tuple[Document, int, Any]] = []
        shipped = already_there = 0
        later: tuple[int, Any] | None = None  # an answer that says "later", for the log
        try:
            answers = self._bulk(batch.pending)
        except Exception as exc:
            from elasticsearch import ApiError

            # An ApiError is an answer about the whole request (429, 503, 401...), not about any
            # one document; anything else is no answer at all (refused, timeout, TLS...).
            retry = batch.pending
            self._failed(batch, exc, unanswered=not isinstance(exc, ApiError))
        else:
            self._answered()
            if answers is None:
                shipped = len(batch.pending)
            else:
                for doc, info in zip(batch.pending, answers):
                    status = info.get("status", 500)
                    if 200 <= status < 300:
                        shipped += 1
                    elif status == 409:
                        already_there += 1
                    elif status == 429 or status >= 500:
                        retry.append(doc)
                        later = (status, info.get("error"))
                    else:
                        refused.append((doc, status, info.get("error")))
        if later is not None:
            self._failed(batch, later[1], unanswered=False, status=later[0])
        if refused:
            with self._lock:  # one writer at a time in the dead-letter file
                self.dead_letter.write(refused)
        with self._lock:
            self.stats.shipped += shipped
            self.stats.already_there += already_there
            self.stats.dead_lettered += len(refused)
        if refused:
            self._log.warning("Elasticsearch refused documents for good; written to the dead-letter file",
                              count=len(refused), first_reason=_error_text(refused[0][2]),
                              file=str(self.dead_letter.path))
        batch.pending = retry
        return retry

    def _bulk(self, docs: list[Document]) -> list[dict] | None:
        """One `_bulk` request of `create` ops. None when every document was created, else
        each document's answer (`status`, and `error` when refused), in order.

        The request body is joined from the documents' bytes (no JSON work here), and the
        answer is filtered to what is read of it: a full answer repeats index, id, version,
        shards and sequence numbers per document, which the node spends CPU writing and this
        process reading."""
        payload = b"".join([part for doc in docs for part in (doc.action, doc.body, b"\n")])
        answer = self.client.bulk(operations=payload, filter_path=BULK_ANSWER_FIELDS).body
        if not answer.get("errors"):
            return None
        items = answer.get("items") or []
        if len(items) != len(docs):
            raise ValueError(f"the bulk answer has {len(items)} items for {len(docs)} documents")
        return [next(iter(item.values())) for item in items]

    def _setup(self, batch: _Batch) -> bool:
        """Templates before the first document, so no event lands in an unmapped index."""
        from elasticsearch import AuthorizationException

        from faultwarden.daemon.ship.client import explain
        from faultwarden.daemon.ship.templates import setup

        with self._lock:  # once, whichever sender comes first
            if not self._need_setup:
                return True
            try:
                setup(self.client, self.prefix)
            except AuthorizationException as exc:
                self._log.warning("may not install index templates; shipping without them "
                                  "(run `faultwarden ship --setup` as an admin)",
                                  reason=explain(exc, self.hosts))
            except Exception as exc:
                self._failed(batch, exc, unanswered=not _is_answer(exc))
                return False
            self._need_setup = False
        self._answered()
        return True

    def _failed(self, batch: _Batch, error: Any, unanswered: bool, status: int | None = None) -> None:
        """Record why this attempt failed: one line a person can act on."""
        from elasticsearch import ApiError

        from faultwarden.daemon.ship.client import explain, needs_person

        # `cause` is the reason without what differs every time (a rejection's reason names
        # Java objects by address): the same cause again is not logged again at once.
        if isinstance(error, ApiError):
            text = explain(error, self.hosts)[:400]
            body = error.body if isinstance(error.body, dict) else {}
            kind = body.get("error", {}).get("type") if isinstance(body.get("error"), dict) else None
            cause = f"{error.status_code} {kind}" if kind else text
            person = needs_person(error)
        elif isinstance(error, BaseException):
            text = cause = explain(error, self.hosts)
            person = needs_person(error)
        else:  # a per-document answer: its status and error object
            text = f"Elasticsearch at {self.hosts} answered {status}: {_error_text(error)[:300]}"
            kind = error.get("type") if isinstance(error, dict) else None
            cause = f"{status} {kind}" if kind else text
            person = False
        batch.failed(unanswered, text, cause, person)
        self._blocked = person
        if not unanswered:
            self._answered()

    def _note_retry(self, batch: _Batch, state: Any) -> None:
        """One log line when shipping is first held up or the reason changes, then one every
        LOG_EVERY failed attempts (of all senders together), not one per sender and attempt."""
        with self._lock:
            self.stats.retried += len(batch.pending)
            if state.outcome.failed:  # not Elasticsearch: our own bug or the disk
                exc = state.outcome.exception()
                batch.failed(False, f"{type(exc).__name__}: {exc}", type(exc).__name__)
            self._failures_unlogged += 1
            log = batch.cause != self._logged_error or self._failures_unlogged >= LOG_EVERY
            if log:
                self._logged_error, self._failures_unlogged = batch.cause, 0
            self._failing = True
        if log:
            wait = state.next_action.sleep if state.next_action else 0.0
            emit = self._log.error if batch.needs_person else self._log.warning
            emit("shipping to Elasticsearch is held up; retrying", reason=batch.last_error,
                 pending=len(batch.pending), attempt=state.attempt_number, retry_in_s=round(wait, 2))

    def _resolved(self, batch: _Batch) -> None:
        """This batch has its answers; acknowledge it and any finished batches after it, but
        only once every batch before them is acknowledged too (submit order)."""
        ready: list[_Batch] = []
        with self._lock:
            batch.resolved = True
            while self._in_order and self._in_order[0].resolved:
                ready.append(self._in_order.popleft())
            self.stats.batches += len(ready)
            count = sum(len(b.docs) for b in ready)
            if count:  # room first, so that a callback that submits cannot wait on itself
                with self._idle:
                    self._room_taken -= count
                    self._idle.notify_all()
            # Calling back under the lock keeps the offsets reported in order across senders.
            for done in ready:
                self._acknowledge(done.docs)
        if count:
            with self._idle:
                self._outstanding -= count
                self._idle.notify_all()

    def _acknowledge(self, docs: list[Document]) -> None:
        if self.on_shipped is None:
            return
        ends: dict[str, int] = {}
        for doc in docs:
            if doc.file_id is not None and doc.end is not None:
                ends[doc.file_id] = max(doc.end, ends.get(doc.file_id, doc.end))
        for file_id, end in ends.items():
            try:
                self.on_shipped(file_id, end)
            except Exception:  # the caller's bug must not stop shipping
                self._log.exception("on_shipped callback failed", file_id=file_id, end=end)


class LocalSink:
    """No Elasticsearch configured: events are counted and acknowledged at once (the file stays
    the record; incidents live in the state dir's incident book)."""

    def __init__(self, on_shipped: OnShipped | None = None):
        self.on_shipped = on_shipped
        self.stats = ShipStats()

    def submit(self, event: Mapping[str, Any], file_id: str | None = None, end: int | None = None,
               timeout: float | None = None) -> bool:
        self.stats.submitted += 1
        self.stats.shipped += 1
        if self.on_shipped is not None and file_id is not None and end is not None:
            self.on_shipped(file_id, end)
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        return True

    def close(self, timeout: float = 0.0) -> bool:
        return True


def make_sink(config: Any, on_shipped: OnShipped | None = None, **kwargs: Any):
    """The sink the config asks for: Elasticsearch when hosts are set, else the local one."""
    if config.elasticsearch.hosts:
        return ElasticsearchSink(config.elasticsearch, on_shipped, state_dir=config.state_dir, **kwargs)
    return LocalSink(on_shipped)


def _is_answer(exc: BaseException) -> bool:
    from elasticsearch import ApiError

    return isinstance(exc, ApiError)


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict):
            text += f" (caused by {cause.get('type')}: {cause.get('reason')})"
        return text
    return str(error)[:500]
