"""Apitally destination: aggregated metrics and request logs, as the ``apitally`` 0.x client
sends them to its hub (``{base}/v2/{client_id}/{env}``)::

    POST /startup       once per process: instance and message uuids, routes, versions, client
    POST /sync          every 10 s in the first hour, then every 60 s: requests aggregated by
                        (consumer, method, route, status) with size sums and histograms,
                        validation errors, server errors, consumers, CPU % and RSS
    POST /log?uuid=...  request-log items as gzip-compressed NDJSON, one file per upload

Aggregation runs on spanlytics' background worker from masked records; the request path
is unchanged. Differences from the official client, on purpose:

* no silent drop above ~100 requests/s (it buffers 100 log items per second); log files are
  bounded in size and handed to :mod:`spanlytics.delivery.sender` (retries, spool, Retry-After);
* records are masked by spanlytics' rules first (``api_key`` query parameters, camelCase
  fields such as ``cardNumber``, tokens in free text), then the client's include options;
* route templates use one syntax for every framework (``/items/{item_id}``), in the
  startup paths and the counts alike; response times run to the last byte sent;
* the health/probe exclusions (``SPANLYTICS_EXCLUDE_*``) keep those requests out of the
  counts as well as the log;
* forked workers start with empty aggregates and their own instance uuid;
* 500 responses made by Starlette's error handler are seen with their size and headers,
  and validation errors are counted for Flask apps that answer 422 in FastAPI's shape too.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanlytics import __about__
from spanlytics._json import dumps
from spanlytics._process import reset_in_child
from spanlytics._throttle import ThrottledLogger
from spanlytics.capture import routes
from spanlytics.config import numeric_problem
from spanlytics.delivery.sender import Sender, retry_after_s
from spanlytics.delivery.settings import SenderSettings
from spanlytics.delivery.spool import Batch

if TYPE_CHECKING:
    import requests

    from spanlytics.record import RequestRecord

_logger = logging.getLogger("spanlytics.apitally")
_log = ThrottledLogger(_logger)

DEFAULT_BASE_URL = "https://hub.apitally.io"
HUB_VERSION = "v2"
SYNC_INTERVAL_S = 60.0
INITIAL_SYNC_INTERVAL_S = 10.0
INITIAL_PERIOD_S = 3600.0
MAX_SYNC_AGE_S = 3600.0  # the client drops sync data older than this; the spool does too

MAX_MSG_LENGTH = 2048
MAX_TRACEBACK_LENGTH = 65536
MAX_BODY_SIZE = 50_000
MAX_LOG_FILE_BYTES = 1_000_000  # compressed, as the client rotates its files
BODY_TOO_LARGE = b"<body too large>"
LOG_CONTENT_TYPES = (
    "application/json",
    "application/problem+json",
    "application/vnd.api+json",
    "text/plain",
)


@dataclass(frozen=True)
class ApitallyOptions:
    """The client's request-logging configuration (same defaults), plus the sync interval."""

    request_logging: bool = False
    log_query_params: bool = True
    log_request_headers: bool = False
    log_request_body: bool = False
    log_response_headers: bool = True
    log_response_body: bool = False
    log_exception: bool = True
    trust_forwarded: bool = False
    sync_interval_s: float | None = None  # None: 10 s during the first hour, then 60 s

    def __post_init__(self) -> None:
        """The timer waits ``sync_interval_s``: NaN, inf or 1e300 would stop it (OverflowError)."""
        if self.sync_interval_s is not None:
            problem = numeric_problem("apitally_sync_interval_s", self.sync_interval_s)
            if problem is not None:
                raise ValueError(f"invalid ApitallyOptions.sync_interval_s: {problem}")


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


def _consumer_fields(record: RequestRecord) -> tuple[str | None, str | None, str | None]:
    consumer = record.consumer
    if consumer is None or not consumer.identifier.strip():
        return None, None, None
    name = consumer.name.strip()[:64] if consumer.name else None
    group = consumer.group.strip()[:64] if consumer.group else None
    return consumer.identifier.strip()[:128], name or None, group or None


def _request_size(record: RequestRecord) -> int | None:
    """The body's size; none for a request without a body or Content-Length (a GET), as the
    client reads it from Content-Length, so averages are over requests that have a body."""
    size = record.request_size
    if size is None or size < 0:
        return None
    if size == 0 and not any(name == "content-length" for name, _ in record.request_headers):
        return None
    return size


def _status(record: RequestRecord) -> int:
    if record.status is not None:
        return record.status
    return 500 if record.exception is not None else 0


def _validation_errors(record: RequestRecord) -> list[tuple[tuple[str, ...], str, str]]:
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
        consumer, name, group = _consumer_fields(record)
        if consumer is not None and (name or group):
            self._consumer(consumer, name, group)  # as the client: even on an unmatched route
        if record.route is None:  # unmatched routes are not counted
            return
        status = _status(record)
        key = (consumer, record.method.upper(), record.route, status)
        entry = self._requests.get(key)
        if entry is None:
            entry = self._requests[key] = _Requests()
        entry.count += 1
        entry.response_times[response_time_bucket(record.duration_ms / 1000.0)] += 1
        request_size = _request_size(record)
        if request_size is not None:
            entry.request_size_sum += request_size
            entry.request_sizes[request_size // 1000] += 1
        if record.response_size is not None and record.response_size >= 0:
            entry.response_size_sum += record.response_size
            entry.response_sizes[record.response_size // 1000] += 1
        if status == 422:
            for loc, msg, kind in _validation_errors(record):
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

    def __init__(self, options: ApitallyOptions) -> None:
        self.options = options

    def _url(self, record: RequestRecord) -> str:
        scheme, host = record.scheme, record.host
        headers = dict(record.request_headers)
        forwarded = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if forwarded == "https":  # as the client: a proxy terminating TLS
            scheme = "https"
        if self.options.trust_forwarded:
            host = headers.get("x-forwarded-host", host).split(",")[0].strip() or host
        url = f"{scheme}://{host}{record.path}"
        if self.options.log_query_params and record.query:
            url += "?" + record.query
        return url

    def item(self, record: RequestRecord) -> dict[str, Any] | None:
        if record.method == "OPTIONS":
            return None
        options = self.options
        consumer, _, _ = _consumer_fields(record)
        request = {
            "timestamp": record.start_time_ns / 1e9,
            "method": record.method,
            "path": record.route,
            "url": self._url(record),
            "headers": [list(h) for h in record.request_headers] if options.log_request_headers else [],
            "size": _request_size(record),
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
            "status_code": _status(record),
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
            "uuid": str(uuid.UUID(record.record_id)) if _is_uuid(record.record_id) else str(uuid.uuid4()),
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


def _is_uuid(value: str) -> bool:
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


# --- process facts ------------------------------------------------------------------------


class ResourceSampler:
    """CPU % since the last sample and current RSS; None the first time, as the client."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def sample(self) -> dict[str, float | int] | None:
        times = os.times()
        now = (time.monotonic(), times.user + times.system)
        last, self._last = self._last, now
        rss = _rss_bytes()
        if last is None or rss is None or now[0] <= last[0]:
            return None
        cpu = (now[1] - last[1]) / (now[0] - last[0]) * 100.0
        return {"cpu_percent": round(cpu, 1), "memory_rss": rss}


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore[import-untyped,import-not-found,unused-ignore]  # optional

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


def _versions(framework: str) -> dict[str, str]:
    found = {
        "python": ".".join(str(part) for part in sys.version_info[:3]),
        "spanlytics": __about__.VERSION,
    }
    frameworks = ("flask",) if framework == "flask" else ("fastapi", "starlette")
    for package in ("opentelemetry-sdk", *frameworks, "uvicorn", "gunicorn", "hypercorn"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


class InstanceSlot:
    """A stable instance uuid per worker slot, as the client keeps one: a process that restarts
    reuses its slot's uuid, concurrent workers hold different slots (a file lock each)."""

    MAX_SLOTS = 100

    def __init__(self, client_id: str, env: str) -> None:
        self.key = hashlib.sha256(f"{client_id}:{env}".encode()).hexdigest()[:8]
        self._fd: int | None = None
        self.uuid = self._acquire()

    def _acquire(self) -> str:
        try:
            import fcntl
        except ImportError:  # not POSIX: one uuid per process
            return str(uuid.uuid4())
        directory = Path(tempfile.gettempdir()) / "spanlytics-apitally"
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return str(uuid.uuid4())
        for slot in range(self.MAX_SLOTS):
            try:
                fd = os.open(directory / f"instance_{self.key}_{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            content = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            if not _is_uuid(content):
                content = str(uuid.uuid4())
                os.ftruncate(fd, 0)
                os.pwrite(fd, content.encode(), 0)
            self._fd = fd
            return content
        return str(uuid.uuid4())

    def reacquire(self) -> None:
        """In a forked child: the parent keeps its slot; this process takes another."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # our copy only; the parent's descriptor keeps its lock
            self._fd = None
        self.uuid = self._acquire()


# --- the destination ----------------------------------------------------------------------


class ApitallyDestination:
    """Counts masked records and talks to the Apitally hub through :mod:`spanlytics.delivery.sender`."""

    name = "apitally"

    def __init__(
        self,
        client_id: str,
        env: str,
        settings: SenderSettings,
        options: ApitallyOptions | None = None,
    ) -> None:
        self.client_id = str(uuid.UUID(client_id))
        self.env = env
        self.options = options or ApitallyOptions()
        self.encoder = RequestLogEncoder(self.options)
        base = f"{settings.base_url.rstrip('/')}/{HUB_VERSION}/{self.client_id}/{env}"
        sender_settings = dataclasses.replace(
            settings,
            base_url=base,
            gzip=False,  # log files are gzip already; sync payloads go as the client sends them
            spool_max_age_s=min(settings.spool_max_age_s, MAX_SYNC_AGE_S),
            pause_statuses=frozenset({401, 403}),
        )
        self.sender = Sender(self.name, sender_settings, on_status=self._on_status)
        self.slot = InstanceSlot(self.client_id, env)
        self._disabled = False
        self._reset()
        reset_in_child(self, ApitallyDestination._reset_child)
        self._start()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the log file, the startup state
        self.aggregator = Aggregator()
        self.resources = ResourceSampler()
        self.resources.sample()  # the first sync then has figures (the client's first has none)
        self._log_file: LogFile | None = None
        self._log_suspended_until = 0.0
        self._announced_version = -1
        self._started_at = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _reset_child(self) -> None:
        self._reset()
        self.slot.reacquire()
        if not self._disabled:
            self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spanlytics-apitally", daemon=True)
        self._thread.start()

    @property
    def instance_uuid(self) -> str:
        return self.slot.uuid

    def sync_interval_s(self) -> float:
        if self.options.sync_interval_s is not None:
            return self.options.sync_interval_s
        early = time.monotonic() - self._started_at < INITIAL_PERIOD_S
        return INITIAL_SYNC_INTERVAL_S if early else SYNC_INTERVAL_S

    # -- the exporter's side -----------------------------------------------------------------

    def export(self, records: Sequence[RequestRecord]) -> None:
        if self._disabled:
            return
        if self._pid != os.getpid():
            self._reset_child()
        self.aggregator.add(records)
        if self.options.request_logging and time.time() >= self._log_suspended_until:
            self._log(records)

    def _log(self, records: Sequence[RequestRecord]) -> None:
        full: list[LogFile] = []
        with self._lock:
            for record in records:
                item = self.encoder.item(record)
                if item is None:
                    continue
                if self._log_file is None:
                    self._log_file = LogFile()
                self._log_file.write(dumps(item))
                if self._log_file.size >= MAX_LOG_FILE_BYTES:
                    full.append(self._log_file)
                    self._log_file = None
        for log_file in full:
            self._submit_log(log_file)

    def _submit_log(self, log_file: LogFile) -> None:
        body = log_file.finish()
        self.sender.submit(
            Batch(body, log_file.records, f"/log?uuid={log_file.uuid}", "application/octet-stream")
        )

    # -- the timer's side --------------------------------------------------------------------

    def _run(self) -> None:
        stop = self._stop
        if stop.wait(1.0):  # the client announces at once; a second lets the app add its routes
            return
        try:
            with self._lock:
                self._announce()
        except Exception as exc:  # _sync announces again
            _log.failure("announce", "spanlytics apitally: startup message failed", exc)
        while True:
            try:  # the timer must outlive any one sync; _sync logs its own errors
                if stop.wait(self.sync_interval_s()):
                    return
            except Exception as exc:
                _log.failure(
                    "timer", "spanlytics apitally: sync timer error; using the default interval", exc
                )
                if stop.wait(SYNC_INTERVAL_S):
                    return
            self._sync(always=True)

    def _payload(self, data: dict[str, Any]) -> bytes:
        message = {"instance_uuid": self.instance_uuid, "message_uuid": str(uuid.uuid4()), **data}
        return dumps(message)

    def _announce(self) -> None:
        """The startup message, once per process and again when another app registers."""
        current = routes.version()
        if current == self._announced_version:
            return
        self._announced_version = current
        info = routes.apps_info()
        framework = info.framework or _framework_guess()
        startup: dict[str, Any] = {
            "paths": [{"method": method, "path": path} for method, path in info.routes],
            "versions": _versions(framework),
            "client": f"python:{framework}",
        }
        if info.openapi is not None:
            startup["openapi"] = info.openapi
        self.sender.submit(Batch(self._payload(startup), 0, "/startup"))

    def _sync(self, always: bool) -> None:
        """Startup if due, the current log file, then a sync (always, or when anything is counted)."""
        if self._disabled:
            return
        try:
            with self._lock:
                self._announce()
                log_file, self._log_file = self._log_file, None
            if log_file is not None and log_file.records:
                self._submit_log(log_file)
            if not always and not self.aggregator.pending():
                return
            data: dict[str, Any] = {"timestamp": time.time(), **self.aggregator.drain()}
            data["resources"] = self.resources.sample()
            count = sum(entry["request_count"] for entry in data["requests"])
            self.sender.submit(Batch(self._payload(data), count, "/sync"))
        except Exception as exc:  # never let the timer die; never log values
            _log.failure("sync", "spanlytics apitally: sync failed", exc)

    # -- hub answers -------------------------------------------------------------------------

    def _on_status(self, batch: Batch, response: requests.Response) -> str | None:
        status = response.status_code
        if status == 404:
            if not self._disabled:
                self._disabled = True
                self._stop.set()
                _logger.error(
                    "spanlytics apitally: the hub does not know client id %s (env %s): HTTP 404. "
                    "The apitally destination is disabled; check SPANLYTICS_APITALLY_CLIENT_ID.",
                    self.client_id,
                    self.env,
                )
            return "rejected"
        if status == 402 and batch.path.startswith("/log"):
            wait = retry_after_s(response.headers.get("Retry-After"))
            if wait is not None:
                self._log_suspended_until = time.time() + wait
                with self._lock:
                    self._log_file = None
                _log.warning(
                    "hub.402",
                    "spanlytics apitally: request logging paused for %.0fs (HTTP 402 from the hub)",
                    wait,
                )
                return "rejected"
            return None
        if status == 422:
            _log.warning(
                f"hub.422.{batch.path.split('?')[0]}",
                "spanlytics apitally: the hub rejected a %s message (HTTP 422): %s",
                batch.path.split("?")[0].lstrip("/"),
                _hub_errors(response),
            )
            return "rejected"
        return None

    # -- lifecycle ---------------------------------------------------------------------------

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        if self._pid != os.getpid():
            self._reset_child()
        self._sync(always=False)
        return self.sender.force_flush(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """A final startup (if never sent), log upload and sync, then delivery or the spool."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self._sync(always=True)
        self.sender.shutdown(timeout_s)


def _hub_errors(response: requests.Response) -> str:
    """Where and why the hub's validation failed (locations and messages, never input values)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return "no details"
    if not isinstance(detail, list):
        return "no details"
    parts = []
    for error in detail[:5]:
        if isinstance(error, dict):
            loc = ".".join(str(p) for p in error.get("loc", ()))
            parts.append(f"{loc}: {str(error.get('msg', ''))[:100]}")
    return "; ".join(parts) or "no details"


def _framework_guess() -> str:
    if "flask" in sys.modules and "starlette" not in sys.modules:
        return "flask"
    return "starlette"


def decode_log(body: bytes) -> list[dict[str, Any]]:
    """A ``/log`` upload back to its items (for tests and debugging)."""
    return [json.loads(line) for line in gzip.decompress(body).splitlines() if line.strip()]
