"""One framework-neutral, semconv-version-neutral value per HTTP server span.

:func:`from_span` reads a finished span (old HTTP semantic conventions, the stable ones from
``OTEL_SEMCONV_STABILITY_OPT_IN=http``, or both with ``http/dup``) plus, when the capture
middleware saw the request, the captured side data, which wins where both know a value
(it is what the client actually sent and received).

Deliberate choices:

* Only ``SpanKind.SERVER`` spans with an HTTP method become records; internal, client and
  non-HTTP server spans give ``None``.
* ``route`` is the route *template* (``/items/{item_id}``). Flask's ``/items/<int:item_id>``
  is normalised to ``/items/{item_id}``. A request that matched no route (a 404 from the
  router) has ``route=None``: it is stored and counted, and reports group it as
  ``(unmatched)`` rather than inventing one route per raw path.
* Bodies are text: only text-like content types (JSON, form, text, XML) keep their content;
  others become a placeholder naming their size. A declared charset is honoured
  (``charset=utf-16``, ``latin-1``, ...); bytes invalid in it become replacement characters,
  never an error. UTF-16 and UTF-32 sent without a charset are recognised by their byte-order mark or
  their NUL bytes. A body in a charset Python does not know, or that would still be text
  riddled with NULs, is treated as binary: masking could not read it, so it must not be
  stored as text.

This module does no I/O and imports no web framework.
"""

from __future__ import annotations

import codecs
import operator
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from spanlytics._process import on_reset
from spanlytics.consumer import (
    ATTR_CONSUMER_GROUP,
    ATTR_CONSUMER_ID,
    ATTR_CONSUMER_NAME,
    Consumer,
    make_consumer,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.util.types import AttributeValue

    from spanlytics.capture.state import Capture

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ExceptionInfo:
    """The exception recorded on the span (its ``exception`` event)."""

    type: str
    message: str
    stacktrace: str


@dataclass(frozen=True, slots=True)
class MaskedField:
    """Where a value was masked and which rule did it; never the value itself."""

    path: str
    rule: str


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One HTTP request as analytics and the request log see it.

    Header names are lower-case. Sizes are the true byte counts, even when the stored body
    was cut at the capture cap (``*_body_truncated``). ``duration_ms`` runs from the span's
    start to the later of its end and the last response byte handed to the server.
    """

    record_id: str
    trace_id: str
    span_id: str
    start_time_ns: int
    duration_ms: float
    method: str
    route: str | None
    path: str
    url: str
    query: str
    status: int | None
    scheme: str = "http"
    host: str = ""
    http_version: str = "1.1"
    client_ip: str | None = None
    user_agent: str | None = None
    request_headers: Headers = ()
    response_headers: Headers = ()
    request_content_type: str | None = None
    response_content_type: str | None = None
    request_body: str | None = None
    response_body: str | None = None
    request_size: int | None = None
    response_size: int | None = None
    request_body_truncated: bool = False
    response_body_truncated: bool = False
    consumer: Consumer | None = None
    exception: ExceptionInfo | None = None
    service_name: str | None = None
    masked: tuple[MaskedField, ...] = field(default=())
    annotations: tuple[tuple[str, str], ...] = ()
    """(name, value) pairs that a destination derived from the unmasked request before
    masking (its ``before_mask`` hook), such as ReadMe's hash of the Authorization header.
    Each name starts with the destination's name; only that destination reads it, and
    :func:`record_fields` leaves them out, so no other destination stores or sends them."""

    @property
    def is_error(self) -> bool:
        return self.status is not None and self.status >= 400

    @property
    def is_server_error(self) -> bool:
        return self.status is None or self.status >= 500


_RECORD_FIELDS = tuple(f.name for f in fields(RequestRecord))
_record_values = operator.attrgetter(*_RECORD_FIELDS)
_record_slots: dict[str, Any] = {name: getattr(RequestRecord, name) for name in _RECORD_FIELDS}
_PUBLIC_FIELDS = tuple(name for name in _RECORD_FIELDS if name != "annotations")
_public_values = operator.attrgetter(*_PUBLIC_FIELDS)


def record_fields(record: RequestRecord) -> dict[str, Any]:
    """The record's fields by name, one level deep (``dataclasses.asdict`` without its deep
    copy of every header tuple: several times faster), without the destinations' private
    :attr:`~RequestRecord.annotations`."""
    return dict(zip(_PUBLIC_FIELDS, _public_values(record), strict=True))


def replace_record(record: RequestRecord, **changes: Any) -> RequestRecord:
    """``dataclasses.replace(record, **changes)`` in half the time (it runs for every record).

    Fills a new instance through the slots' descriptors instead of the frozen ``__init__``,
    so ``changes`` must name fields (a misspelt one raises ``KeyError``).
    """
    new = object.__new__(RequestRecord)
    for slot, value in zip(_record_slots.values(), _record_values(record), strict=True):
        slot.__set__(new, value)
    for name, value in changes.items():
        _record_slots[name].__set__(new, value)
    return new


# --- attribute names (old and stable HTTP semantic conventions) -------------------------

_METHOD = ("http.request.method", "http.method")
_SCHEME = ("url.scheme", "http.scheme")
_STATUS = ("http.response.status_code", "http.status_code")
_CLIENT = ("client.address", "http.client_ip", "net.peer.ip")
_USER_AGENT = ("user_agent.original", "http.user_agent")
_FLAVOR = ("network.protocol.version", "http.flavor")
_HOST = ("server.address", "http.host", "net.host.name", "http.server_name")
_PORT = ("server.port", "net.host.port")
_REQ_SIZE = ("http.request.body.size", "http.request_content_length")
_RESP_SIZE = ("http.response.body.size", "http.response_content_length")

_FLASK_PARAM = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
_STARLETTE_CONVERTOR = re.compile(r"\{([^{}:]+):[^{}]*\}")
_TEXT_TYPES = re.compile(
    r"^(?:text/|application/(?:[\w.+-]*\+)?(?:json|xml)\b|application/x-www-form-urlencoded\b"
    r"|application/(?:javascript|graphql|x-ndjson|ld\+json)\b)",
    re.IGNORECASE,
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:\-]+)""", re.IGNORECASE)


def _first(attrs: Mapping[str, AttributeValue], names: Sequence[str]) -> AttributeValue | None:
    for name in names:
        value = attrs.get(name)
        if value is not None:
            return value
    return None


def _str(value: AttributeValue | None) -> str | None:
    return None if value is None else str(value)


def _int(value: AttributeValue | None) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def normalize_route(route: str | None) -> str | None:
    """One template syntax for every framework: ``/items/{item_id}``.

    Flask/werkzeug ``/items/<int:item_id>`` and Starlette ``/items/{item_id:int}`` are
    rewritten; FastAPI templates are already in that form.
    """
    if not route:
        return None
    if "<" in route:
        route = _FLASK_PARAM.sub(r"{\1}", route)
    if ":" in route:
        route = _STARLETTE_CONVERTOR.sub(r"{\1}", route)
    return route


def is_text_content_type(content_type: str | None) -> bool:
    """True for the content types whose bodies are kept as text (JSON, form, text, XML).

    A body without a content type counts as text (HAR and ReadMe treat it as ``text/plain``).
    """
    if not content_type:
        return True
    return _TEXT_TYPES.match(content_type.strip()) is not None


def _charset(content_type: str | None) -> str | None:
    """The codec of a content type's ``charset`` parameter: None for UTF-8 or none given,
    ``""`` for one Python does not know."""
    if not content_type or "charset" not in content_type.lower():
        return None
    match = _CHARSET.search(content_type)
    if match is None:
        return None
    try:
        name = codecs.lookup(match.group(1)).name
    except LookupError:
        return ""
    return None if name == "utf-8" else name


def body_text(raw: bytes | None, content_type: str | None, size: int | None) -> str | None:
    """The text kept for a captured body: decoded text, a placeholder, or None for no body."""
    if not raw:  # no body, or one the app never read: we did not see it, so none is logged
        return None
    omitted = f"[body omitted: {size if size is not None else len(raw)} bytes of {_media_type(content_type)}]"
    if not is_text_content_type(content_type):
        return omitted
    charset = _charset(content_type)
    if charset == "":  # an unknown charset: the text cannot be read, so it cannot be masked
        return omitted
    text = raw.decode(charset or "utf-8", errors="replace")
    if "\x00" in text and text.count("\x00") * 4 >= len(text):  # UTF-16 or -32 without its charset
        text = _wide_text(raw) or ""
        if not text:
            return omitted
    return text


def _wide_text(raw: bytes) -> str | None:
    """A body in UTF-16 or UTF-32 sent without its charset, by its byte-order mark or else by
    where its NUL bytes are; None when that does not give NUL-free text either."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        codec = "utf-32"
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16"
    else:  # ASCII in UTF-16-LE has its NULs at odd offsets
        codec = "utf-16-le" if raw[1::2].count(0) >= raw[0::2].count(0) else "utf-16-be"
    text = raw.decode(codec, errors="replace")
    return None if "\x00" in text else text


def _media_type(content_type: str | None) -> str | None:
    """The type without its parameters (a client-chosen parameter could carry anything)."""
    return content_type.split(";", 1)[0].strip() if content_type else content_type


def _exception(span: ReadableSpan) -> ExceptionInfo | None:
    for event in span.events:
        if event.name == "exception" and event.attributes:
            attrs = event.attributes
            return ExceptionInfo(
                type=str(attrs.get("exception.type", "")),
                message=str(attrs.get("exception.message", "")),
                stacktrace=str(attrs.get("exception.stacktrace", "")),
            )
    return None


def _span_consumer(attrs: Mapping[str, AttributeValue]) -> Consumer | None:
    ident = attrs.get(ATTR_CONSUMER_ID)
    if ident is not None:
        return make_consumer(
            str(ident), _str(attrs.get(ATTR_CONSUMER_NAME)), _str(attrs.get(ATTR_CONSUMER_GROUP))
        )
    ident = attrs.get("enduser.id", attrs.get("user.id"))
    return make_consumer(str(ident)) if ident is not None else None


def _split_target(attrs: Mapping[str, AttributeValue]) -> tuple[str, str]:
    path = _str(attrs.get("url.path"))
    if path is not None:
        return path, _str(attrs.get("url.query")) or ""
    target = _str(attrs.get("http.target")) or "/"
    url = _str(attrs.get("http.url"))
    if url and "?" in url and "?" not in target:
        target = f"{target}?{url.split('?', 1)[1]}"
    path, _, query = target.partition("?")
    return path or "/", query


def _authority(scheme: str, host: str | None, port: int | None) -> str:
    if not host:
        return "localhost"
    if ":" in host and not host.startswith("["):
        bare, _, maybe_port = host.rpartition(":")
        if maybe_port.isdigit():
            host, port = bare, int(maybe_port)
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return host
    return f"{host}:{port}"


_ids = random.Random()  # seeded from os.urandom; reseeded in every forked child
on_reset(_ids.seed, in_child=True)


def new_record_id() -> str:
    """A random (version 4) UUID without a system call per record: ``uuid.uuid4()`` reads
    ``os.urandom``, which gives up the GIL, and a background thread that gives it up waits
    for it again while the app runs. Ids need to be unique, not unpredictable."""
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


def _attributes(span: ReadableSpan) -> Mapping[str, AttributeValue]:
    """One plain copy of the span's attributes: the SDK's ``BoundedAttributes`` answers each
    lookup and iteration step in Python, under a lock. A finished span's attributes no longer
    change, so its inner dict is copied directly when it has one."""
    bounded = getattr(span, "_attributes", None)
    inner = getattr(bounded, "_dict", None)
    if isinstance(inner, dict):
        return dict(inner)
    return dict(span.attributes or {})


def from_span(
    span: ReadableSpan,
    capture: Capture | None = None,
    *,
    consumer: Consumer | None = None,
    record_id: str | None = None,
) -> RequestRecord | None:
    """Map a finished span (and its capture, if any) to a :class:`RequestRecord`.

    ``consumer`` is the consumer resolved from the side channel; without one, the span's
    ``spanlytics.consumer.*`` and then ``enduser.id``/``user.id`` attributes are used.
    Returns ``None`` for spans that are not HTTP server spans.
    """
    if span.kind is not SpanKind.SERVER:
        return None
    attrs = _attributes(span)
    method = _str(_first(attrs, _METHOD))
    if method is None and capture is None:
        return None
    ctx = span.context
    start_ns = span.start_time or 0
    end_ns = span.end_time or start_ns
    if capture is not None and capture.end_time_ns > end_ns:
        end_ns = capture.end_time_ns

    scheme = _str(_first(attrs, _SCHEME)) or "http"
    path, query = _split_target(attrs)
    host_header: str | None = None
    req_headers: Headers = ()
    resp_headers: Headers = ()
    status = _int(_first(attrs, _STATUS))
    req_size = _int(_first(attrs, _REQ_SIZE))
    resp_size = _int(_first(attrs, _RESP_SIZE))
    req_body = resp_body = None
    req_ct = resp_ct = None
    req_trunc = resp_trunc = False
    route = normalize_route(_str(attrs.get("http.route")))
    client_ip = _str(_first(attrs, _CLIENT))
    user_agent = _str(_first(attrs, _USER_AGENT))
    http_version = _str(_first(attrs, _FLAVOR))
    if capture is not None:
        method = capture.method or method
        path = capture.path or path
        query = capture.query
        scheme = capture.scheme or scheme
        req_headers = capture.request_headers
        resp_headers = capture.response_headers
        host_header = capture.header("host")
        req_ct = capture.header("content-type")
        resp_ct = capture.response_header("content-type")
        if capture.status is not None:
            status = capture.status
        req_size = capture.request_size
        resp_size = capture.response_size
        req_trunc = capture.request_truncated
        resp_trunc = capture.response_truncated
        if capture.bodies:
            req_body = body_text(bytes(capture.request_body), req_ct, req_size)
            resp_body = body_text(bytes(capture.response_body), resp_ct, resp_size)
        route = route or normalize_route(capture.route)
        client_ip = capture.client_ip or client_ip
        user_agent = capture.header("user-agent") or user_agent
        http_version = capture.http_version or http_version

    authority = host_header or _authority(scheme, _str(_first(attrs, _HOST)), _int(_first(attrs, _PORT)))
    url = f"{scheme}://{authority}{path}"
    if query:
        url = f"{url}?{query}"
    if consumer is None:
        consumer = _span_consumer(attrs)
    resource = getattr(span, "resource", None)
    service = resource.attributes.get("service.name") if resource is not None else None

    return RequestRecord(
        record_id=record_id or new_record_id(),
        trace_id=f"{ctx.trace_id:032x}" if ctx is not None else "",
        span_id=f"{ctx.span_id:016x}" if ctx is not None else "",
        start_time_ns=start_ns,
        duration_ms=max(end_ns - start_ns, 0) / 1e6,
        method=(method or "GET").upper(),
        route=route,
        path=path,
        url=url,
        query=query,
        status=status,
        scheme=scheme,
        host=authority,
        http_version=http_version or "1.1",
        client_ip=client_ip,
        user_agent=user_agent,
        request_headers=req_headers,
        response_headers=resp_headers,
        request_content_type=req_ct,
        response_content_type=resp_ct,
        request_body=req_body,
        response_body=resp_body,
        request_size=req_size,
        response_size=resp_size,
        request_body_truncated=req_trunc,
        response_body_truncated=resp_trunc,
        consumer=consumer,
        exception=_exception(span),
        service_name=_str(service),
    )
