"""Apitally's request log: masked records as the client's log items, gzip-compressed NDJSON
files of about 1 MB each, uploaded with ``POST /log?uuid=...``."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
import zlib
from typing import TYPE_CHECKING, Any

from spanlytics.destinations.apitally.aggregation import (
    consumer_fields,
    exception_type,
    request_size,
    status_code,
    truncated_message,
    truncated_traceback,
)

if TYPE_CHECKING:
    from spanlytics.destinations.apitally.options import ApitallyOptions
    from spanlytics.record import RequestRecord

MAX_BODY_SIZE = 50_000
MAX_LOG_FILE_BYTES = 1_000_000  # compressed, as the client rotates its files
BODY_TOO_LARGE = b"<body too large>"
LOG_CONTENT_TYPES = (
    "application/json",
    "application/problem+json",
    "application/vnd.api+json",
    "text/plain",
)

# --- request log --------------------------------------------------------------------------


def _non_empty(data: dict[str, Any]) -> dict[str, Any]:
    """The client drops None and empty strings, lists, dicts and bytes."""
    return {
        k: v for k, v in data.items() if v is not None and not (isinstance(v, (str, list, dict)) and not v)
    }


def _loggable(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().startswith(LOG_CONTENT_TYPES)


def _body(text: str | None, size: int | None, truncated: bool, content_type: str | None) -> str | None:
    if text is None or not _loggable(content_type):
        return None
    raw = BODY_TOO_LARGE if truncated or (size or 0) > MAX_BODY_SIZE else text.encode("utf-8")
    return base64.b64encode(raw).decode("ascii") if raw else None


class RequestLogEncoder:
    """Masked records -> the client's request-log items (JSON objects, one per request)."""

    def __init__(self, options: ApitallyOptions, trust_forwarded: bool = False) -> None:
        self.options = options
        self.trust_forwarded = trust_forwarded  # build the URL's host from X-Forwarded-Host

    def _url(self, record: RequestRecord) -> str:
        scheme, host = record.scheme, record.host
        headers = dict(record.request_headers)
        forwarded = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if forwarded == "https":  # as the client: a proxy terminating TLS
            scheme = "https"
        if self.trust_forwarded:
            host = headers.get("x-forwarded-host", host).split(",")[0].strip() or host
        url = f"{scheme}://{host}{record.path}"
        if self.options.log_query_params and record.query:
            url += "?" + record.query
        return url

    def item(self, record: RequestRecord) -> dict[str, Any] | None:
        if record.method == "OPTIONS":
            return None
        options = self.options
        consumer, _, _ = consumer_fields(record)
        request = {
            "timestamp": record.start_time_ns / 1e9,
            "method": record.method,
            "path": record.route,
            "url": self._url(record),
            "headers": [list(h) for h in record.request_headers] if options.log_request_headers else [],
            "size": request_size(record),
            "consumer": consumer,
            "body": _body(
                record.request_body,
                record.request_size,
                record.request_body_truncated,
                record.request_content_type,
            )
            if options.log_request_body
            else None,
        }
        response = {
            "status_code": status_code(record),
            "response_time": record.duration_ms / 1000.0,
            "headers": [list(h) for h in record.response_headers] if options.log_response_headers else [],
            "size": record.response_size,
            "body": _body(
                record.response_body,
                record.response_size,
                record.response_body_truncated,
                record.response_content_type,
            )
            if options.log_response_body
            else None,
        }
        item: dict[str, Any] = {
            "uuid": str(uuid.UUID(record.record_id)) if is_uuid(record.record_id) else str(uuid.uuid4()),
            "request": _non_empty(request),
            "response": _non_empty(response),
        }
        if record.exception is not None and options.log_exception:
            item["exception"] = {
                "type": exception_type(record.exception.type),
                "message": truncated_message(record.exception.message),
                "traceback": truncated_traceback(record.exception.stacktrace),
            }
        return item


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class LogFile:
    """One upload: NDJSON lines gzip-compressed as they come, in memory, about 1 MB at most."""

    def __init__(self) -> None:
        self.uuid = str(uuid.uuid4())
        self.records = 0
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip container
        self._chunks: list[bytes] = []
        self.size = 0

    def write(self, line: bytes) -> None:
        chunk = self._compressor.compress(line + b"\n")
        if chunk:
            self._chunks.append(chunk)
            self.size += len(chunk)
        self.records += 1

    def finish(self) -> bytes:
        self._chunks.append(self._compressor.flush())
        return b"".join(self._chunks)


def decode_log(body: bytes) -> list[dict[str, Any]]:
    """A ``/log`` upload back to its items (for tests and debugging)."""
    return [json.loads(line) for line in gzip.decompress(body).splitlines() if line.strip()]
