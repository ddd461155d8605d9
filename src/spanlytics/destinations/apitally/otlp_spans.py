"""A masked record as the SERVER span Apitally 1.x turns into a request log.

The attribute names are the stable HTTP semantic conventions whatever the app's instrumentor
emitted (the record is semconv-neutral), plus Apitally's own: ``apitally.consumer.identifier``,
``apitally.request.body`` / ``apitally.response.body``, and the captured headers as string
arrays (``http.request.header.<name>``), as the ``apitally`` 1.0 SDK exports them::

    encoder = SpanEncoder(options)
    span = encoder.encode(record)  # a serialized opentelemetry.proto Span, or None (OPTIONS)

Pure: no I/O, no clock, no OpenTelemetry SDK; only the protobuf message classes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.trace.v1.trace_pb2 import Span, SpanFlags, Status

from spanlytics.destinations.apitally.aggregation import (
    consumer_fields,
    exception_type,
    request_size,
    status_code,
    truncated_message,
    truncated_traceback,
)
from spanlytics.destinations.apitally.otlp_wire import add_attributes

if TYPE_CHECKING:
    from spanlytics.destinations.apitally.options import ApitallyOptions
    from spanlytics.record import RequestRecord

__all__ = ["BODY_CONTENT_TYPES", "BODY_TOO_LARGE", "MAX_BODY_SIZE", "SpanEncoder", "span_name"]

MAX_BODY_SIZE = 50_000
BODY_TOO_LARGE = "[BODY_TOO_LARGE]"
BODY_CONTENT_TYPES = (  # the SDK's ALLOWED_CONTENT_TYPES (apitally/shared/config.py)
    "application/json",
    "application/problem+json",
    "application/vnd.api+json",
    "application/ld+json",
    "application/x-ndjson",
    "text/markdown",
    "text/plain",
)
_FLAGS = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK  # "the parent is not remote", as the SDK
_DEFAULT_PORTS = {"http": 80, "https": 443}


def span_name(record: RequestRecord) -> str:
    """``"{method} {route}"``; the method alone for a request that matched no route."""
    return f"{record.method} {record.route}" if record.route else record.method


def _host_port(host: str, scheme: str) -> tuple[str, int | None]:
    if host.startswith("["):  # [::1]:8000
        address, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        address, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    return address, int(port) if port.isdigit() else _DEFAULT_PORTS.get(scheme)


def _body(text: str | None, size: int | None, truncated: bool, content_type: str | None) -> str | None:
    """The body as the SDK exports it: only for its content types, the placeholder above
    50,000 bytes (the true size counts, not what was captured), nothing when empty."""
    if not text or not (content_type or "").strip().lower().startswith(BODY_CONTENT_TYPES):
        return None
    if truncated or (size or 0) > MAX_BODY_SIZE or len(text.encode("utf-8")) > MAX_BODY_SIZE:
        return BODY_TOO_LARGE
    return text


def _headers(prefix: str, headers: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(prefix + name.lower(), []).append(value)
    return grouped


def _id(hex_id: str, length: int) -> bytes:
    try:
        raw = bytes.fromhex(hex_id)
    except ValueError:
        raw = b""
    return raw if len(raw) == length and any(raw) else os.urandom(length)


class SpanEncoder:
    """Masked records -> serialized ``Span`` messages; ``options`` say which headers, bodies
    and exceptions go (the ``apitally_log_*`` switches, with the SDK's defaults)."""

    def __init__(self, options: ApitallyOptions) -> None:
        self.options = options

    def attributes(self, record: RequestRecord) -> dict[str, Any]:
        options = self.options
        status = status_code(record)
        address, port = _host_port(record.host, record.scheme)
        attributes: dict[str, Any] = {
            "http.request.method": record.method,
            "url.scheme": record.scheme,
            "url.path": record.path,
            "server.address": address,
            "server.port": port,
            "network.protocol.version": record.http_version,
            "user_agent.original": record.user_agent,
            "client.address": record.client_ip,
            "http.response.status_code": status,
            "http.route": record.route,
            "url.query": record.query if options.log_query_params else None,
        }
        if status >= 500:  # the status code, as the instrumentors of the SDK's spans set it
            attributes["error.type"] = str(status)
        consumer, _, _ = consumer_fields(record)
        attributes["apitally.consumer.identifier"] = consumer
        attributes["http.request.body.size"] = request_size(record)
        if record.response_size is not None and record.response_size >= 0:
            attributes["http.response.body.size"] = record.response_size
        if options.log_request_headers:
            attributes.update(_headers("http.request.header.", record.request_headers))
        if options.log_response_headers:
            attributes.update(_headers("http.response.header.", record.response_headers))
        for key, logged, text, size, truncated, content_type in (
            (
                "apitally.request.body",
                options.log_request_body,
                record.request_body,
                record.request_size,
                record.request_body_truncated,
                record.request_content_type,
            ),
            (
                "apitally.response.body",
                options.log_response_body,
                record.response_body,
                record.response_size,
                record.response_body_truncated,
                record.response_content_type,
            ),
        ):
            if logged:
                attributes[key] = _body(text, size, truncated, content_type)
        return {key: value for key, value in attributes.items() if value is not None and value != ""}

    def encode(self, record: RequestRecord) -> bytes | None:
        """One serialized ``Span``; None for OPTIONS, which the SDK never logs."""
        if record.method == "OPTIONS":
            return None
        start = record.start_time_ns
        end = start + round(record.duration_ms * 1e6)
        span = Span(
            trace_id=_id(record.trace_id, 16),
            span_id=_id(record.span_id, 8),
            flags=_FLAGS,
            name=span_name(record),
            kind=Span.SpanKind.SPAN_KIND_SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=end,
        )
        add_attributes(span.attributes, self.attributes(record))
        exception = record.exception
        if exception is not None and self.options.log_exception:
            event = span.events.add(name="exception", time_unix_nano=end)
            add_attributes(
                event.attributes,
                {
                    "exception.type": exception_type(exception.type),
                    "exception.message": truncated_message(exception.message),
                    "exception.stacktrace": truncated_traceback(exception.stacktrace),
                    "exception.escaped": "False",  # as OpenTelemetry's record_exception writes it
                },
            )
        if exception is not None or status_code(record) >= 500:
            span.status.code = Status.StatusCode.STATUS_CODE_ERROR  # no description, as the SDK's
        serialized: bytes = span.SerializeToString()
        return serialized
