"""One framework-neutral, semconv-version-neutral value per HTTP server span.

:func:`from_span` reads a finished span (old HTTP semantic conventions, the stable ones from
``OTEL_SEMCONV_STABILITY_OPT_IN=http``, or both with ``http/dup``: see
:mod:`spanlytics.span_attributes`) plus, when the capture middleware saw the request, its
frozen :class:`~spanlytics.capture.snapshot.CapturedRequest`, which wins where both know a
value (it is what the client actually sent and received). The consumer is decided before,
by :class:`~spanlytics.consumer.ConsumerResolver`, and handed in.

Deliberate choices:

* Only ``SpanKind.SERVER`` spans with an HTTP method become records; internal, client and
  non-HTTP server spans give ``None``.
* ``route`` is the route *template* (``/items/{item_id}``). Flask's ``/items/<int:item_id>``
  is normalised to ``/items/{item_id}``. A request that matched no route (a 404 from the
  router) has ``route=None``: it is stored and counted, and reports group it as
  ``(unmatched)`` rather than inventing one route per raw path.
* Bodies are text: only text-like content types (JSON, form, text, XML) keep their content;
  others become a placeholder naming their size (see :mod:`spanlytics.body_text`).

This module does no I/O and imports no web framework.
"""

from __future__ import annotations

import operator
import random
import uuid
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from spanlytics._process import on_reset
from spanlytics.app_routes import normalize_route
from spanlytics.body_text import body_text, is_text_content_type
from spanlytics.capture.snapshot import CapturedRequest
from spanlytics.consumer.value import Consumer
from spanlytics.span_attributes import read_attributes, request_fields, span_authority

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan


__all__ = [  # body_text, is_text_content_type and normalize_route: where callers found them
    "ExceptionInfo",
    "MaskedField",
    "RequestRecord",
    "body_text",
    "from_span",
    "is_text_content_type",
    "new_record_id",
    "normalize_route",
    "record_fields",
    "replace_record",
]

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


_ids = random.Random()  # seeded from os.urandom; reseeded in every forked child
on_reset(_ids.seed, in_child=True)


def new_record_id() -> str:
    """A random (version 4) UUID without a system call per record: ``uuid.uuid4()`` reads
    ``os.urandom``, which gives up the GIL, and a background thread that gives it up waits
    for it again while the app runs. Ids need to be unique, not unpredictable."""
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


def from_span(
    span: ReadableSpan,
    captured: CapturedRequest | None = None,
    *,
    consumer: Consumer | None = None,
    record_id: str | None = None,
) -> RequestRecord | None:
    """Map a finished span (and its captured request, if any) to a :class:`RequestRecord`.

    ``consumer`` is the request's consumer as the resolver decided it; this function does
    no consumer logic. Returns ``None`` for spans that are not HTTP server spans.
    """
    if span.kind is not SpanKind.SERVER:
        return None
    attrs = read_attributes(span)
    values = request_fields(attrs)
    if values["method"] is None and captured is None:
        return None
    ctx = span.context
    start_ns = span.start_time or 0
    end_ns = span.end_time or start_ns
    host_header = None
    if captured is not None:
        end_ns = max(end_ns, captured.end_time_ns)
        host_header = captured.header("host")
        _correct_with_capture(values, captured)
    values["method"] = (values["method"] or "GET").upper()
    values["http_version"] = values["http_version"] or "1.1"
    scheme, path, query = values["scheme"], values["path"], values["query"]
    host = host_header or span_authority(attrs, scheme)
    url = f"{scheme}://{host}{path}?{query}" if query else f"{scheme}://{host}{path}"
    resource = getattr(span, "resource", None)
    service = resource.attributes.get("service.name") if resource is not None else None
    return RequestRecord(
        record_id=record_id or new_record_id(),
        trace_id=f"{ctx.trace_id:032x}" if ctx is not None else "",
        span_id=f"{ctx.span_id:016x}" if ctx is not None else "",
        start_time_ns=start_ns,
        duration_ms=max(end_ns - start_ns, 0) / 1e6,
        url=url,
        host=host,
        consumer=consumer,
        exception=_exception(span),
        service_name=None if service is None else str(service),
        **values,
    )


def _correct_with_capture(values: dict[str, Any], captured: CapturedRequest) -> None:
    """What the client actually sent and received wins over what the span recorded; the
    route stays the instrumentation's when it has one."""
    req_ct = captured.header("content-type")
    resp_ct = captured.response_header("content-type")
    req_size, resp_size = captured.request_size, captured.response_size
    bodies = captured.bodies
    values.update(
        method=captured.method or values["method"],
        path=captured.path or values["path"],
        query=captured.query,
        scheme=captured.scheme or values["scheme"],
        request_headers=captured.request_headers,
        response_headers=captured.response_headers,
        request_content_type=req_ct,
        response_content_type=resp_ct,
        status=values["status"] if captured.status is None else captured.status,
        request_size=req_size,
        response_size=resp_size,
        request_body_truncated=captured.request_truncated,
        response_body_truncated=captured.response_truncated,
        request_body=body_text(captured.request_body, req_ct, req_size) if bodies else None,
        response_body=body_text(captured.response_body, resp_ct, resp_size) if bodies else None,
        route=values["route"] or normalize_route(captured.route),
        client_ip=captured.client_ip or values["client_ip"],
        user_agent=captured.header("user-agent") or values["user_agent"],
        http_version=captured.http_version or values["http_version"],
    )
