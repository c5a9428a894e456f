"""The Elasticsearch client from the config, and low-level errors turned into one clear line.

Retries: the transport's own retries have no delay unless configured (and its back-off options
only exist in recent clients), so clients made here default to `max_retries=0` and whoever
retries does it with tenacity (exponential back-off with jitter, interruptible on shutdown).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the elasticsearch package is heavy; it is imported when a client is made
    from elasticsearch import Elasticsearch

    from faultwarden.daemon.config import Elasticsearch as Settings


class ShipError(Exception):
    """Elasticsearch could not be used; the message is one line naming the host."""


def connect(settings: "Settings", *, max_retries: int = 0, request_timeout: float | None = None) -> "Elasticsearch":
    from elasticsearch import Elasticsearch

    if not settings.hosts:
        raise ShipError("no Elasticsearch configured: set elasticsearch.hosts in the config "
                        "(or FAULTWARDEN_ES_HOSTS)")
    kwargs: dict[str, Any] = {
        "request_timeout": request_timeout or settings.request_timeout_s,
        "max_retries": max_retries,
        "retry_on_timeout": False,
    }
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        kwargs["basic_auth"] = (settings.username, password)
    if settings.api_key:
        kwargs["api_key"] = settings.api_key.get_secret_value()
    if settings.ca_certs:
        kwargs["ca_certs"] = settings.ca_certs
    if any(h.startswith("https://") for h in settings.hosts):
        kwargs["verify_certs"] = settings.verify_certs
    kwargs["serializers"] = _serializers()
    return Elasticsearch(list(settings.hosts), **kwargs)


def _serializers() -> dict[str, Any]:
    """orjson for JSON (a dependency; its serializer class exists from elasticsearch 8.12 on),
    and bulk bodies that are already NDJSON bytes sent as they are: the stock serializer copies
    a multi-megabyte body twice to make sure it ends with a newline."""
    from elasticsearch.serializer import NdjsonSerializer

    class NdjsonBytes(NdjsonSerializer):
        def dumps(self, data: Any) -> bytes:
            if isinstance(data, bytes) and data.endswith(b"\n"):
                return data
            return super().dumps(data)

    serializers: dict[str, Any] = {"application/x-ndjson": NdjsonBytes()}
    try:
        from elasticsearch.serializer import OrjsonSerializer
    except ImportError:  # pragma: no cover - older client
        return serializers

    class Json(OrjsonSerializer):
        def loads(self, data: bytes) -> Any:
            # A bulk answer filtered to BULK_ANSWER_FIELDS with no error in it: only `errors` is
            # read. Not building a thousand small dicts per request is ~6 % of the shipper's
            # CPU. Any other answer is parsed whole.
            if data.startswith(_ALL_CREATED):
                return {"errors": False}
            return super().loads(data)

    serializers["application/json"] = Json()
    return serializers


# What the sink reads of a bulk answer. The full answer repeats index, id, version, shards and
# sequence numbers for every document; filtered, an answer without errors starts like this:
BULK_ANSWER_FIELDS = "errors,items.*.status,items.*.error"
_ALL_CREATED = b'{"errors":false,"items":[{"create":{"status":'


def hosts_of(client: Any) -> str:
    try:
        return ", ".join(str(n.base_url) for n in client.transport.node_pool.all())
    except AttributeError:  # pragma: no cover - a fake client
        return "Elasticsearch"


def explain(exc: BaseException, hosts: str) -> str:
    """One line for a person: what failed, at which host, and what to check."""
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout, TlsError
    from elasticsearch import ApiError, AuthenticationException, AuthorizationException

    if isinstance(exc, AuthenticationException):
        return (f"Elasticsearch at {hosts} refused the credentials (401): check elasticsearch.username "
                "and FAULTWARDEN_ES_PASSWORD, or FAULTWARDEN_ES_API_KEY")
    if isinstance(exc, AuthorizationException):
        return f"Elasticsearch at {hosts}: the user may not do this (403): {_reason(exc)}"
    if isinstance(exc, TlsError):
        return f"TLS to Elasticsearch at {hosts} failed (check elasticsearch.ca_certs): {_first_line(exc)}"
    if isinstance(exc, ConnectionTimeout):
        return f"Elasticsearch at {hosts} did not answer in time"
    if isinstance(exc, TransportConnectionError):
        return f"cannot reach Elasticsearch at {hosts}: {_first_line(exc)}"
    if isinstance(exc, ApiError):
        return f"Elasticsearch at {hosts} answered {exc.status_code}: {_reason(exc)}"
    return f"Elasticsearch at {hosts}: {type(exc).__name__}: {_first_line(exc)}"


def needs_person(exc: BaseException) -> bool:
    """A failure retrying will not cure: wrong credentials or rights, a certificate not trusted.
    Shipping still retries (a person may fix it while the daemon runs), but shutting down does
    not wait for it."""
    from elastic_transport import TlsError
    from elasticsearch import ApiError

    return isinstance(exc, TlsError) or (isinstance(exc, ApiError) and exc.status_code in (401, 403))


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('type', 'error')}: {err.get('reason', '')}"
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    # Transport errors say only "Connection error"; the reason is in `.message` and the cause
    # (urllib3's long repr), whose innermost part is what a person needs.
    texts = [getattr(exc, "message", None), str(exc.__cause__) if exc.__cause__ else None, str(exc)]
    text = " ".join(t for t in texts if t)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "Temporary failure in name" in text:
        return "unknown host name"
    if "timed out" in text.lower():
        return "timed out"
    best = next((t for t in texts if t and t.strip()), type(exc).__name__)
    return best.strip().splitlines()[0][:300]
