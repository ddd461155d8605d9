"""Apitally's sync data: requests aggregated by (consumer, method, route, status) with size
sums and histograms, validation errors, server errors and consumers, field by field as the
``apitally`` 0.x client computes them."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spanlytics.record import RequestRecord

MAX_MSG_LENGTH = 2048
MAX_TRACEBACK_LENGTH = 65536

# --- what the client computes, field by field --------------------------------------------


def exception_type(name: str) -> str:
    """``module.QualName``; OpenTelemetry leaves ``builtins.`` off, the client does not."""
    return name if "." in name else f"builtins.{name}"


def truncated_message(message: str) -> str:
    message = message.strip()
    if len(message) <= MAX_MSG_LENGTH:
        return message
    suffix = "... (truncated)"
    return message[: MAX_MSG_LENGTH - len(suffix)] + suffix


def truncated_traceback(stacktrace: str) -> str:
    """At most 65,536 characters, keeping the end (where the error is), whole lines only."""
    prefix = "... (truncated) ...\n"
    cutoff = MAX_TRACEBACK_LENGTH - len(prefix)
    kept: list[str] = []
    length = 0
    for line in reversed(stacktrace.splitlines(keepends=True)):
        if length + len(line) > cutoff:
            kept.append(prefix)
            break
        kept.append(line)
        length += len(line)
    return "".join(reversed(kept)).strip()


def response_time_bucket(seconds: float) -> int:
    """The client's 10 ms bucket, with its exact float arithmetic."""
    return int(math.floor(seconds / 0.01) * 10)


def consumer_fields(record: RequestRecord) -> tuple[str | None, str | None, str | None]:
    consumer = record.consumer
    if consumer is None or not consumer.identifier.strip():
        return None, None, None
    name = consumer.name.strip()[:64] if consumer.name else None
    group = consumer.group.strip()[:64] if consumer.group else None
    return consumer.identifier.strip()[:128], name or None, group or None


def request_size(record: RequestRecord) -> int | None:
    """The body's size; none for a request without a body or Content-Length (a GET), as the
    client reads it from Content-Length, so averages are over requests that have a body."""
    size = record.request_size
    if size is None or size < 0:
        return None
    if size == 0 and not any(name == "content-length" for name, _ in record.request_headers):
        return None
    return size


def status_code(record: RequestRecord) -> int:
    if record.status is not None:
        return record.status
    return 500 if record.exception is not None else 0


def validation_errors(record: RequestRecord) -> list[tuple[tuple[str, ...], str, str]]:
    """FastAPI/Pydantic errors from a 422 JSON response body: ``{"detail": [...]}``."""
    content_type = (record.response_content_type or "").lower()
    if not record.response_body or not content_type.startswith("application/json"):
        return []
    try:
        body = json.loads(record.response_body)
    except ValueError:  # a truncated or non-JSON body: nothing to count
        return []
    if not isinstance(body, dict) or not isinstance(body.get("detail"), list):
        return []
    errors = []
    for error in body["detail"]:
        try:
            loc = tuple(str(part) for part in error["loc"])
            msg, kind = error["msg"], error["type"]
        except (KeyError, TypeError):
            continue
        if isinstance(msg, str) and isinstance(kind, str):
            errors.append((loc, msg, kind))
    return errors


# --- aggregation --------------------------------------------------------------------------


RequestKey = tuple[str | None, str, str, int]  # consumer, method, route, status


@dataclass
class _Requests:
    count: int = 0
    request_size_sum: int = 0
    response_size_sum: int = 0
    response_times: Counter[int] = dataclasses.field(default_factory=Counter)
    request_sizes: Counter[int] = dataclasses.field(default_factory=Counter)
    response_sizes: Counter[int] = dataclasses.field(default_factory=Counter)


class Aggregator:
    """The counts of one sync interval. ``add`` and ``drain`` may run on different threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[RequestKey, _Requests] = {}
        self._validation: Counter[tuple[str | None, str, str, tuple[str, ...], str, str]] = Counter()
        self._server: Counter[tuple[str | None, str, str, str, str, str]] = Counter()
        self._consumers: dict[str, tuple[str | None, str | None]] = {}
        self._updated: set[str] = set()

    def add(self, records: Sequence[RequestRecord]) -> None:
        with self._lock:
            for record in records:
                self._add(record)

    def _add(self, record: RequestRecord) -> None:
        if record.method == "OPTIONS":
            return
        consumer, name, group = consumer_fields(record)
        if consumer is not None and (name or group):
            self._consumer(consumer, name, group)  # as the client: even on an unmatched route
        if record.route is None:  # unmatched routes are not counted
            return
        status = status_code(record)
        key = (consumer, record.method.upper(), record.route, status)
        entry = self._requests.get(key)
        if entry is None:
            entry = self._requests[key] = _Requests()
        entry.count += 1
        entry.response_times[response_time_bucket(record.duration_ms / 1000.0)] += 1
        size = request_size(record)
        if size is not None:
            entry.request_size_sum += size
            entry.request_sizes[size // 1000] += 1
        if record.response_size is not None and record.response_size >= 0:
            entry.response_size_sum += record.response_size
            entry.response_sizes[record.response_size // 1000] += 1
        if status == 422:
            for loc, msg, kind in validation_errors(record):
                self._validation[(consumer, key[1], key[2], loc, msg, kind)] += 1
        if status == 500 and record.exception is not None:
            exc = record.exception
            error = (
                consumer,
                key[1],
                key[2],
                exception_type(exc.type),
                truncated_message(exc.message),
                truncated_traceback(exc.stacktrace),
            )
            self._server[error] += 1

    def _consumer(self, identifier: str, name: str | None, group: str | None) -> None:
        known = self._consumers.get(identifier)
        if known is None:
            self._consumers[identifier] = (name, group)
            self._updated.add(identifier)
            return
        new = (name or known[0], group or known[1])
        if new != known:
            self._consumers[identifier] = new
            self._updated.add(identifier)

    def pending(self) -> bool:
        with self._lock:
            return bool(self._requests or self._validation or self._server or self._updated)

    def drain(self) -> dict[str, list[dict[str, Any]]]:
        """The sync payload's lists, and a fresh start for the next interval."""
        with self._lock:
            requests, self._requests = self._requests, {}
            validation, self._validation = self._validation, Counter()
            server, self._server = self._server, Counter()
            updated, self._updated = self._updated, set()
            consumers = {ident: self._consumers[ident] for ident in updated}
        return {
            "requests": [
                {
                    "consumer": consumer,
                    "method": method,
                    "path": path,
                    "status_code": status,
                    "request_count": entry.count,
                    "request_size_sum": entry.request_size_sum,
                    "response_size_sum": entry.response_size_sum,
                    "response_times": dict(entry.response_times),
                    "request_sizes": dict(entry.request_sizes),
                    "response_sizes": dict(entry.response_sizes),
                }
                for (consumer, method, path, status), entry in requests.items()
            ],
            "validation_errors": [
                {
                    "consumer": consumer,
                    "method": method,
                    "path": path,
                    "loc": list(loc),
                    "msg": msg,
                    "type": kind,
                    "error_count": count,
                }
                for (consumer, method, path, loc, msg, kind), count in validation.items()
            ],
            "server_errors": [
                {
                    "consumer": consumer,
                    "method": method,
                    "path": path,
                    "type": kind,
                    "msg": msg,
                    "traceback": tb,
                    "sentry_event_id": None,
                    "error_count": count,
                }
                for (consumer, method, path, kind, msg, tb), count in server.items()
            ],
            "consumers": [
                {"identifier": ident, "name": name, "group": group}
                for ident, (name, group) in consumers.items()
            ],
        }
