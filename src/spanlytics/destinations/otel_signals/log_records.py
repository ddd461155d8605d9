"""A masked :class:`~spanlytics.record.RequestRecord` as an OpenTelemetry log record: pure,
no provider, no I/O::

    log_record(record)  # -> opentelemetry._logs.LogRecord, ready for Logger.emit()

* Correlated with the request's server span: its trace and span ids. The record does not
  keep the span's trace flags, so they are always ``SAMPLED``: a record exists for every
  server span spanlytics saw, and a log pipeline that keeps only sampled logs must keep it.
* Timestamped at the request's start; severity by status: 5xx (or no status) ``ERROR``,
  4xx ``WARN``, else ``INFO``.
* Attributes: the HTTP semantic conventions (``http.request.method``, ``http.route``,
  ``url.path``, masked ``url.query``, ...), ``spanlytics.consumer.id`` / ``.name`` /
  ``.group``, ``spanlytics.duration_ms`` and ``spanlytics.record_id`` (stable: a receiver
  can drop duplicates).
* Body: a map with the masked headers (name -> list of values), bodies, content types and
  truncation flags of the request and the response, the masked-field notes (path and rule,
  never a value) and the exception. What was not captured is left out.
* Event name ``spanlytics.request``, so that a Collector can route these records. Every
  supported API (1.43 to 1.45) has ``LogRecord(event_name=...)``; an older one gets the
  ``event.name`` attribute instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from spanlytics.consumer.value import ATTR_CONSUMER_GROUP, ATTR_CONSUMER_ID, ATTR_CONSUMER_NAME
from spanlytics.record import RequestRecord

__all__ = ["EVENT_NAME", "HAS_EVENT_NAME", "log_body", "log_record", "record_attributes", "severity"]

EVENT_NAME = "spanlytics.request"
HAS_EVENT_NAME = "event_name" in inspect.signature(LogRecord.__init__).parameters
"""Whether this API's LogRecord takes an event name (else: the ``event.name`` attribute)."""

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)


def severity(status: int | None) -> tuple[SeverityNumber, str]:
    """5xx or no status (the app raised): ERROR; 4xx: WARN; else INFO."""
    if status is None or status >= 500:
        return SeverityNumber.ERROR, "ERROR"
    if status >= 400:
        return SeverityNumber.WARN, "WARN"
    return SeverityNumber.INFO, "INFO"


def record_attributes(record: RequestRecord) -> dict[str, Any]:
    """The log record's attributes (semantic conventions first; absent values left out)."""
    attrs: dict[str, Any] = {
        "http.request.method": record.method,
        "url.path": record.path,
        "url.scheme": record.scheme,
        "network.protocol.version": record.http_version,
        "spanlytics.duration_ms": record.duration_ms,
        "spanlytics.record_id": record.record_id,
    }
    optional = (
        ("http.route", record.route),
        ("url.query", record.query or None),
        ("http.response.status_code", record.status),
        ("http.request.body.size", record.request_size),
        ("http.response.body.size", record.response_size),
        ("server.address", record.host or None),
        ("client.address", record.client_ip),
        ("user_agent.original", record.user_agent),
    )
    attrs.update((name, value) for name, value in optional if value is not None)
    if record.exception is not None:
        attrs["error.type"] = record.exception.type or "_OTHER"
    elif record.is_server_error:
        attrs["error.type"] = str(record.status) if record.status is not None else "_OTHER"
    consumer = record.consumer
    if consumer is not None:
        attrs[ATTR_CONSUMER_ID] = consumer.identifier
        if consumer.name is not None:
            attrs[ATTR_CONSUMER_NAME] = consumer.name
        if consumer.group is not None:
            attrs[ATTR_CONSUMER_GROUP] = consumer.group
    if not HAS_EVENT_NAME:
        attrs["event.name"] = EVENT_NAME
    return attrs


def _headers(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in pairs:
        headers.setdefault(name, []).append(value)
    return headers


def _message(
    headers: Sequence[tuple[str, str]], content_type: str | None, body: str | None, truncated: bool
) -> dict[str, Any]:
    message: dict[str, Any] = {}
    if headers:
        message["headers"] = _headers(headers)
    if content_type is not None:
        message["content_type"] = content_type
    if body is not None:
        message["body"] = body
        message["body_truncated"] = truncated
    return message


def log_body(record: RequestRecord) -> Mapping[str, Any]:
    """The structured body: masked headers and bodies, masked-field notes, the exception."""
    body: dict[str, Any] = {
        "request": _message(
            record.request_headers,
            record.request_content_type,
            record.request_body,
            record.request_body_truncated,
        ),
        "response": _message(
            record.response_headers,
            record.response_content_type,
            record.response_body,
            record.response_body_truncated,
        ),
    }
    if record.masked:
        body["masked"] = [{"path": m.path, "rule": m.rule} for m in record.masked]
    if record.exception is not None:
        exc = record.exception
        body["exception"] = {"type": exc.type, "message": exc.message, "stacktrace": exc.stacktrace}
    return body


def _hex(value: str) -> int:
    try:
        return int(value, 16) if value else 0
    except ValueError:
        return 0


def log_record(record: RequestRecord) -> LogRecord:
    """The OpenTelemetry log record of one masked request record."""
    number, text = severity(record.status)
    trace_id, span_id = _hex(record.trace_id), _hex(record.span_id)
    # The span's context, not the worker's current one (which may be a request's, when
    # spanlytics.flush() runs on a request thread): ids and context agree for any processor.
    flags = _SAMPLED if record.sampled else _UNSAMPLED  # as the span's: a dropped trace says so
    span = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags))
    fields: dict[str, Any] = {
        "timestamp": record.start_time_ns,
        "context": set_span_in_context(span, Context()),
        "trace_id": trace_id,
        "span_id": span_id,
        "trace_flags": flags,
        "severity_number": number,
        "severity_text": text,
        "body": log_body(record),
        "attributes": record_attributes(record),
    }
    if HAS_EVENT_NAME:
        fields["event_name"] = EVENT_NAME
    return LogRecord(**fields)
