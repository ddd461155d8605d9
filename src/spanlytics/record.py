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

import itertools
import operator
import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from spanlytics._process import on_reset
from spanlytics.app_routes import normalize_route
from spanlytics.body_text import body_text, is_text_content_type
from spanlytics.capture.snapshot import CapturedRequest
from spanlytics.consumer.value import Consumer
from spanlytics.span_attributes import (
    CLIENT,
    FLAVOR,
    METHOD,
    SCHEME,
    STATUS,
    USER_AGENT,
    as_int,
    as_str,
    first,
    read_attributes,
    request_fields,
    span_authority,
    split_target,
)

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
    sampled: bool = True
    """The span's trace flags: False for a request the app's head sampler dropped and
    spanlytics recorded anyway (:class:`~spanlytics.SpanlyticsSampler`), whose trace no
    backend holds. Stores and senders leave it out (:func:`record_fields`); the otel
    destination sets its log records' trace flags from it."""
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
_PUBLIC_FIELDS = tuple(name for name in _RECORD_FIELDS if name not in ("sampled", "annotations"))
_public_values = operator.attrgetter(*_PUBLIC_FIELDS)

_Draft = make_dataclass("_Draft", [(name, Any) for name in _RECORD_FIELDS], slots=True)
"""A mutable twin of :class:`RequestRecord` (same slots, same order). A frozen dataclass's
``__init__`` sets each field through ``object.__setattr__``; a draft's plain attribute
stores cost a fraction of that, and a filled draft then *becomes* the record (``__class__``
assignment between classes of one layout). This runs two or three times for every record.
RequestRecord has no ``__post_init__``: one added later would have to run here too."""
_draft_slots: dict[str, Any] = {name: getattr(_Draft, name) for name in _RECORD_FIELDS}


def _draft_to_record(draft: Any) -> RequestRecord:
    draft.__class__ = RequestRecord
    return draft  # type: ignore[no-any-return]


def _init_to_record(draft: Any) -> RequestRecord:
    return RequestRecord(*_record_values(draft))


def _converter() -> Callable[[Any], RequestRecord]:
    """``__class__`` assignment where the interpreter allows it (CPython), else ``__init__``."""
    try:
        _draft_to_record(_Draft(*range(len(_RECORD_FIELDS))))
    except TypeError:
        return _init_to_record
    return _draft_to_record


_to_record = _converter()


def record_fields(record: RequestRecord) -> dict[str, Any]:
    """The record's fields by name, one level deep (``dataclasses.asdict`` without its deep
    copy of every header tuple: several times faster), without the destinations' private
    :attr:`~RequestRecord.annotations` and the span's :attr:`~RequestRecord.sampled` flag."""
    return dict(zip(_PUBLIC_FIELDS, _public_values(record), strict=True))


def replace_record(record: RequestRecord, **changes: Any) -> RequestRecord:
    """``dataclasses.replace(record, **changes)`` in a fraction of the time (it runs for every
    record), with no field validation: ``changes`` must name fields (a misspelt one raises
    ``KeyError``)."""
    draft = _Draft(*_record_values(record))
    for name, value in changes.items():
        _draft_slots[name].__set__(draft, value)
    return _to_record(draft)


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


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version and variant bits
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant
_COUNTER_BITS = 40  # the last 10 hex digits; the 82 random bits before them name the series


class _IdSeries:
    """Record ids: version 4 UUIDs whose random part is drawn once per series, and whose
    last 40 bits count the series' records. Unique (82 random bits per process and per
    fork) without a system call or a random draw per record, and ascending within a
    process: the local store's primary-key index then takes each batch at one place (a
    random id per record dirties index pages all over the file, and the store's CPU per
    record grows with the file)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        bits = int.from_bytes(os.urandom(16), "big") & _UUID4_CLEAR | _UUID4_SET
        h = f"{bits:032x}"
        self.prefix = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:22]}"
        self.counter = itertools.count()


_series = _IdSeries()
on_reset(_series.restart, in_child=True)  # a forked child must not repeat its parent's ids


def new_record_id() -> str:
    """A new record id: a version 4 UUID string, unique across processes and forks."""
    n = next(_series.counter)
    if n >> _COUNTER_BITS:  # a trillion records later: a new series
        _series.restart()
        n = next(_series.counter)
    return f"{_series.prefix}{n:010x}"


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
    r = _Draft(*_DEFAULTS)  # filled by name below, then frozen once
    start_ns = span.start_time or 0
    end_ns = span.end_time or start_ns
    if captured is not None:
        _fill_from_capture(r, attrs, captured)
        host = captured.header("host") or span_authority(attrs, r.scheme)
        end_ns = max(end_ns, captured.end_time_ns)
    else:
        values = request_fields(attrs)
        if values["method"] is None:
            return None
        for name, value in values.items():
            _draft_slots[name].__set__(r, value)
        r.method = r.method.upper()
        r.http_version = r.http_version or "1.1"
        host = span_authority(attrs, r.scheme)
    ctx = span.context
    resource = getattr(span, "resource", None)
    service = resource.attributes.get("service.name") if resource is not None else None
    r.record_id = record_id or new_record_id()
    r.trace_id = f"{ctx.trace_id:032x}" if ctx is not None else ""
    r.span_id = f"{ctx.span_id:016x}" if ctx is not None else ""
    r.sampled = ctx is None or ctx.trace_flags.sampled
    r.start_time_ns = start_ns
    r.duration_ms = max(end_ns - start_ns, 0) / 1e6
    r.host = host
    r.url = f"{r.scheme}://{host}{r.path}?{r.query}" if r.query else f"{r.scheme}://{host}{r.path}"
    r.consumer = consumer
    r.exception = _exception(span)
    r.service_name = None if service is None else str(service)
    return _to_record(r)


_DEFAULTS = tuple(None if f.default is MISSING else f.default for f in fields(RequestRecord))
"""Every field at its default (None for the required ones, which ``from_span`` always sets)."""


def _fill_from_capture(r: Any, attrs: dict[str, Any], captured: CapturedRequest) -> None:
    """What the client actually sent and received wins over what the span recorded, which is
    read only where the capture lacks a value; the route stays the instrumentation's when it
    has one."""
    r.method = (captured.method or as_str(first(attrs, METHOD)) or "GET").upper()
    r.route = normalize_route(as_str(attrs.get("http.route"))) or normalize_route(captured.route)
    r.path = captured.path or split_target(attrs)[0]
    r.query = captured.query
    r.status = as_int(first(attrs, STATUS)) if captured.status is None else captured.status
    r.scheme = captured.scheme or as_str(first(attrs, SCHEME)) or "http"
    r.http_version = captured.http_version or as_str(first(attrs, FLAVOR)) or "1.1"
    r.client_ip = captured.client_ip or as_str(first(attrs, CLIENT))
    r.user_agent = captured.header("user-agent") or as_str(first(attrs, USER_AGENT))
    r.request_headers = captured.request_headers
    r.response_headers = captured.response_headers
    r.request_content_type = req_ct = captured.header("content-type")
    r.response_content_type = resp_ct = captured.response_header("content-type")
    r.request_size = req_size = captured.request_size
    r.response_size = resp_size = captured.response_size
    r.request_body_truncated = captured.request_truncated
    r.response_body_truncated = captured.response_truncated
    if captured.bodies:
        r.request_body = body_text(captured.request_body, req_ct, req_size)
        r.response_body = body_text(captured.response_body, resp_ct, resp_size)
