"""Apitally 1.x events: OTLP log records identified by their event name, with the bodies the
``apitally`` 1.0 SDK sends (``apitally/shared/startup.py``, ``consumers.py``,
``validation_errors.py``, ``server_errors.py``)::

    apitally.app.startup               JSON text: framework, versions, config, paths, openapi
    apitally.consumer.update           {identifier, name?, group?} when they change
    apitally.request.validation_error  {method, path, source, field, message, type, counts}
    apitally.request.server_error      {method, path, type, message, stacktrace, counts}

``counts`` is ``[{"consumer": id, "count": n}]`` (``{"count": n}`` without a consumer), per
export interval. Built from masked records; pure but for the clock of :func:`log_record`.
"""

from __future__ import annotations

import json
import platform
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from spanlytics.destinations.apitally.aggregation import (
    consumer_fields,
    exception_type,
    status_code,
    truncated_message,
    truncated_traceback,
    validation_errors,
)
from spanlytics.destinations.apitally.otlp_wire import set_any_value

if TYPE_CHECKING:
    from spanlytics.destinations.apitally.options import ApitallyOptions
    from spanlytics.record import RequestRecord

__all__ = [
    "CONSUMER_UPDATE",
    "SERVER_ERROR",
    "STARTUP",
    "VALIDATION_ERROR",
    "ConsumerUpdates",
    "ErrorEvents",
    "log_record",
    "startup_body",
]

STARTUP = "apitally.app.startup"
CONSUMER_UPDATE = "apitally.consumer.update"
VALIDATION_ERROR = "apitally.request.validation_error"
SERVER_ERROR = "apitally.request.server_error"
MAX_ERRORS = 100  # distinct validation (and server) errors per interval, as the SDK
MAX_OPENAPI_BYTES = 4_000_000
MAX_CACHED_CONSUMERS = 10_000
_SOURCES = {  # the SDK's SOURCE_ALIASES
    "body": "body",
    "query": "query",
    "path": "path",
    "header": "header",
    "cookie": "cookie",
    "querystring": "query",
    "params": "path",
    "path_params": "path",
    "headers": "header",
    "cookies": "cookie",
}


def log_record(event_name: str, body: Any, time_ns: int | None = None) -> bytes:
    """One serialized ``LogRecord``: the event's name and body, no trace context."""
    now = time_ns or time.time_ns()
    record = LogRecord(time_unix_nano=now, observed_time_unix_nano=now, event_name=event_name)
    set_any_value(record.body, body)
    serialized: bytes = record.SerializeToString()
    return serialized


def startup_body(
    framework: str,
    paths: list[tuple[str, str]],
    versions: Mapping[str, str],
    options: ApitallyOptions,
    openapi: str | None = None,
) -> str:
    """The startup event's body: JSON text, as the SDK sends it. ``config`` names the SDK's
    options with the values spanlytics applies (its masking is its own: no patterns here)."""
    payload: dict[str, Any] = {
        "framework": framework,
        "versions": {"python": platform.python_version(), **versions},
        "config": {
            "capture_logs": False,
            "capture_request_headers": options.log_request_headers,
            "capture_request_body": options.log_request_body,
            "capture_response_headers": options.log_response_headers,
            "capture_response_body": options.log_response_body,
            "mask_query_params": [],
            "mask_headers": [],
            "mask_body_fields": [],
            "exclude_paths": [],
            "sample_rate": options.sample_rate,
        },
        "paths": [{"method": method, "path": path} for method, path in paths],
    }
    if openapi and len(openapi.encode()) <= MAX_OPENAPI_BYTES:
        payload["openapi"] = openapi
    return json.dumps(payload, separators=(",", ":"))


class ConsumerUpdates:
    """``apitally.consumer.update`` bodies for consumers whose name or group changed (the
    first time a consumer with a name or group is seen counts as a change)."""

    def __init__(self) -> None:
        self._last: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()

    def update(self, record: RequestRecord) -> dict[str, str] | None:
        identifier, name, group = consumer_fields(record)
        if identifier is None or not (name or group):
            return None
        changed = self._last.get(identifier) != (name, group)
        self._last[identifier] = (name, group)
        self._last.move_to_end(identifier)
        if len(self._last) > MAX_CACHED_CONSUMERS:
            self._last.popitem(last=False)
        if not changed:
            return None
        body = {"identifier": identifier}
        if name:
            body["name"] = name
        if group:
            body["group"] = group
        return body


def _location(loc: tuple[str, ...]) -> tuple[str, str]:
    source = _SOURCES.get(loc[0].lower(), "") if loc else ""
    return source, ".".join(loc[1:] if source else loc)


def _counts(counts: Counter[str | None]) -> list[dict[str, Any]]:
    return [
        {"count": count} if consumer is None else {"consumer": consumer, "count": count}
        for consumer, count in counts.items()
    ]


class ErrorEvents:
    """Validation errors (FastAPI's 422 answers) and server errors (500 with an exception) of
    one export interval, counted per consumer. ``add`` and ``drain`` may run on different
    threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._validation: dict[tuple[str, ...], Counter[str | None]] = {}
        self._server: dict[tuple[str, ...], Counter[str | None]] = {}

    def add(self, record: RequestRecord) -> None:
        if record.method == "OPTIONS" or not record.route:
            return
        status = status_code(record)
        if status not in (422, 500):
            return
        consumer, _, _ = consumer_fields(record)
        method = record.method.upper()
        with self._lock:
            if status == 422:
                for loc, message, kind in validation_errors(record):
                    source, field = _location(loc)
                    found = (method, record.route, source[:32], field[:2048], message[:2048], kind[:128])
                    self._count(self._validation, found, consumer)
            elif record.exception is not None:
                exception = record.exception
                error = (
                    method,
                    record.route,
                    exception_type(exception.type)[:256],
                    truncated_message(exception.message),
                    truncated_traceback(exception.stacktrace),
                )
                self._count(self._server, error, consumer)

    @staticmethod
    def _count(
        into: dict[tuple[str, ...], Counter[str | None]], key: tuple[str, ...], consumer: str | None
    ) -> None:
        counts = into.get(key)
        if counts is None:
            if len(into) >= MAX_ERRORS:
                return
            counts = into[key] = Counter()
        counts[consumer] += 1

    def drain(self) -> list[tuple[str, dict[str, Any]]]:
        """``(event name, body)`` for each error counted since the last drain."""
        with self._lock:
            validation, self._validation = self._validation, {}
            server, self._server = self._server, {}
        events: list[tuple[str, dict[str, Any]]] = []
        for (method, path, source, field, message, kind), counts in validation.items():
            body = {"method": method, "path": path, "source": source, "field": field, "message": message}
            events.append((VALIDATION_ERROR, {**body, "type": kind, "counts": _counts(counts)}))
        for (method, path, kind, message, stacktrace), counts in server.items():
            body = {
                "method": method,
                "path": path,
                "type": kind,
                "message": message,
                "stacktrace": stacktrace,
            }
            events.append((SERVER_ERROR, {**body, "counts": _counts(counts)}))
        return events
