"""ReadMe Metrics destination: masked records as HAR request logs, as ReadMe's SDKs send them.

``POST {base}/v1/request`` with HTTP Basic auth (API key as the user, empty password) and a
JSON array of log objects::

    {"_id": uuid4, "group": {"id": hashed, "label": name, "email": ...},
     "clientIPAddress": ..., "development": false,
     "request": {"log": {"creator": {...}, "entries": [HAR 1.2 entry]}}}

Compared with the official ``readme-metrics`` SDK: masking is case-insensitive and at any
depth, query strings are masked, bodies are capped, ``content.size`` is the length of the
logged text and ``bodySize`` the real body size, ``statusText`` is the reason phrase for
every framework, failed deliveries are retried and spooled instead of dropped, and the URL
honours ``X-Forwarded-*`` only when you trust the proxy. Like the SDK, a body that is not
valid in its charset is sent as ``[NOT VALID UTF-8]`` rather than as lossy text.
"""

from __future__ import annotations

import base64
import hashlib
import platform
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qsl

from spanlytics import __about__
from spanlytics._json import dumps
from spanlytics._setting_fields import parse_bool, parse_csv, parse_optional_str, setting
from spanlytics.delivery.batches import Batch, json_array_batches
from spanlytics.delivery.settings import SenderSettings
from spanlytics.destinations.options import DestinationOptions
from spanlytics.record import RequestRecord

if TYPE_CHECKING:
    from spanlytics.config import Settings

DEFAULT_BASE_URL = "https://metrics.readme.io"
PATH = "/v1/request"
MAX_LOGS_PER_REQUEST = 100
"""The most logs one request to ReadMe carries, as ReadMe's SDKs send them, whatever
``delivery_batch_records`` says (that one sizes the other destinations' batches)."""
NOT_VALID_UTF8 = "[NOT VALID UTF-8]"
"""What ReadMe's SDKs send for a body they cannot decode (readme-metrics' Django, Flask and
WSGI middleware)."""


def _readable(text: str) -> str:
    """The body as ReadMe's SDKs send it: a record's body holds U+FFFD where its bytes could
    not be decoded, and the SDKs send their placeholder instead of such text."""
    return NOT_VALID_UTF8 if "\ufffd" in text else text


AUTHORIZATION_HASH = "readme.authorization_hash"
"""The annotation holding :func:`readme_hash` of the raw Authorization header."""


def readme_hash(value: str) -> str:
    """ReadMe's hash for group ids and the Authorization header (byte-compatible with its SDKs):
    ``"sha512-" + base64(sha512(value)) + "?" + value[-4:]``."""
    digest = base64.b64encode(hashlib.sha512(value.encode("utf-8")).digest()).decode()
    return f"sha512-{digest}?{value[-4:]}"


def _status_text(status: int | None) -> str:
    try:
        return HTTPStatus(status or 0).phrase
    except ValueError:
        return ""


def _started(start_time_ns: int) -> str:
    moment = datetime.fromtimestamp(start_time_ns / 1e9, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _pairs(headers: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in headers]


@dataclass(frozen=True)
class ReadmeOptions(DestinationOptions):
    """The readme destination's options (``readme_*``, ``SPANLYTICS_README_*``).

    ``readme_denylist`` and ``readme_allowlist`` are not here: they are general masking
    settings (:class:`~spanlytics.config.Settings`), applied to every destination."""

    name: ClassVar[str] = "readme"
    required: ClassVar[str | None] = "api_key"

    api_key: str | None = setting(None, parse_optional_str, secret=True)
    base_url: str = setting(DEFAULT_BASE_URL, str)
    development: bool = setting(False, parse_bool)  # mark logs as development data
    allowed_hosts: tuple[str, ...] = setting((), parse_csv, names=True)  # empty: every host
    log_anonymous: str | None = setting(None, parse_optional_str)  # the group of consumer-less requests


class ReadmeEncoder:
    """Masked RequestRecords -> ReadMe log objects (one HAR entry each). With
    ``trust_forwarded`` the URL is built from ``X-Forwarded-Proto``/``-Host``."""

    def __init__(self, options: ReadmeOptions | None = None, trust_forwarded: bool = False) -> None:
        self.options = options or ReadmeOptions()
        self.trust_forwarded = trust_forwarded
        self.creator = {
            "name": "spanlytics",
            "version": __about__.VERSION,
            "comment": (
                f"{platform.machine()}-{platform.system().lower()}{platform.release()}/{platform.python_version()}"
            ),
        }

    def _url(self, record: RequestRecord) -> tuple[str, str]:
        scheme, host = record.scheme, record.host
        if self.trust_forwarded:
            headers = dict(record.request_headers)
            scheme = headers.get("x-forwarded-proto", scheme).split(",")[0].strip() or scheme
            host = headers.get("x-forwarded-host", host).split(",")[0].strip() or host
        url = f"{scheme}://{host}{record.path}"
        return (f"{url}?{record.query}" if record.query else url), host

    def _group(self, record: RequestRecord) -> dict[str, Any] | None:
        if record.consumer is not None:
            group: dict[str, Any] = {"id": readme_hash(record.consumer.identifier)}
            if record.consumer.name is not None:
                group["label"] = record.consumer.name
            if record.consumer.email is not None:
                group["email"] = record.consumer.email
            return group
        if self.options.log_anonymous:
            return {"id": readme_hash(self.options.log_anonymous), "label": self.options.log_anonymous}
        return None

    def _post_data(self, record: RequestRecord) -> dict[str, Any] | None:
        if record.request_body is None:
            return None
        mime = record.request_content_type or "text/plain"
        if mime.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            params = parse_qsl(record.request_body, keep_blank_values=True)
            return {"mimeType": mime, "params": _pairs(params)}
        return {"mimeType": mime, "text": _readable(record.request_body)}

    def entry(self, record: RequestRecord) -> dict[str, Any] | None:
        """One log object, or None for requests ReadMe does not log (OPTIONS, no group, host)."""
        if record.method == "OPTIONS":
            return None
        group = self._group(record)
        if group is None:
            return None
        url, host = self._url(record)
        if self.options.allowed_hosts and host.split(":")[0] not in self.options.allowed_hosts:
            return None
        hashed = dict(record.annotations).get(AUTHORIZATION_HASH)
        headers = [(n, hashed if n == "authorization" and hashed else v) for n, v in record.request_headers]
        request: dict[str, Any] = {
            "method": record.method,
            "url": url,
            "httpVersion": f"HTTP/{record.http_version}",
            "headers": _pairs(headers),
            "queryString": _pairs(parse_qsl(record.query, keep_blank_values=True)),
            "cookies": [],
            "headersSize": -1,
            "bodySize": record.request_size if record.request_size is not None else -1,
        }
        post_data = self._post_data(record)
        if post_data is not None:
            request["postData"] = post_data
        text = _readable(record.response_body or "")
        response = {
            "status": record.status or 500,
            "statusText": _status_text(record.status),
            "headers": _pairs(record.response_headers),
            "content": {
                "text": text,
                "size": len(text.encode("utf-8")),  # HAR: bytes of the content as logged
                "mimeType": record.response_content_type or "text/plain",
            },
            "headersSize": -1,
            "bodySize": record.response_size if record.response_size is not None else -1,
        }
        return {
            "_id": record.record_id,
            "_version": 3,
            "group": group,
            "clientIPAddress": record.client_ip or "",
            "development": self.options.development,
            "request": {
                "log": {
                    "version": "1.2",
                    "creator": self.creator,
                    "entries": [
                        {
                            "pageref": url,
                            "startedDateTime": _started(record.start_time_ns),
                            "time": round(record.duration_ms),
                            "request": request,
                            "response": response,
                            "cache": {},
                            "timings": {"wait": round(record.duration_ms), "receive": 0},
                        }
                    ],
                }
            },
        }

    def encode(self, records: Sequence[RequestRecord], max_records: int, max_bytes: int) -> Iterator[Batch]:
        entries = (self.entry(record) for record in records)
        items = (dumps(entry) for entry in entries if entry is not None)
        return json_array_batches(items, max_records, max_bytes, PATH)


class ReadmeDestination:
    """Sends request logs to ReadMe's Metrics API through :mod:`spanlytics.delivery.sender`."""

    name = "readme"

    def __init__(
        self,
        options: ReadmeOptions,
        settings: SenderSettings,
        *,
        trust_forwarded: bool = False,
        max_records: int = MAX_LOGS_PER_REQUEST,
        max_bytes: int = 1024 * 1024,
    ) -> None:
        """``options.api_key`` is required; ``settings`` carry the Metrics API's base URL."""
        # requests (behind Sender) is imported when a remote destination is built, not with spanlytics
        from spanlytics.delivery.sender import Sender

        if not options.api_key:
            raise ValueError("the readme destination needs an API key")
        self.encoder = ReadmeEncoder(options, trust_forwarded)
        self.max_records = max_records
        self.max_bytes = max_bytes
        token = base64.b64encode(f"{options.api_key}:".encode()).decode()
        auth = (("Authorization", f"Basic {token}"),)
        self.sender = Sender(self.name, SenderSettings(**{**settings.__dict__, "headers": auth}))

    def before_mask(self, record: RequestRecord) -> tuple[tuple[str, str], ...]:
        """ReadMe logs the Authorization header as its hash, computed from the raw value."""
        raw = dict(record.request_headers).get("authorization")  # the last one, as the encoder reads
        return ((AUTHORIZATION_HASH, readme_hash(raw)),) if raw else ()

    def export(self, records: Sequence[RequestRecord]) -> None:
        for batch in self.encoder.encode(records, self.max_records, self.max_bytes):
            self.sender.submit(batch)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return self.sender.force_flush(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        self.sender.shutdown(timeout_s)


def build_readme(settings: Settings, options: ReadmeOptions) -> ReadmeDestination:
    """The registry's factory: the API's URL from the options, delivery from the core settings."""
    return ReadmeDestination(
        options,
        SenderSettings.from_settings(settings, options.base_url),
        trust_forwarded=settings.trust_forwarded_headers,
        max_records=min(settings.delivery_batch_records, MAX_LOGS_PER_REQUEST),
        max_bytes=settings.delivery_batch_bytes,
    )
