"""The Apitally hub protocol: the destination that counts masked records, and its timer that
sends ``startup`` once per process, ``sync`` every interval and the request-log files."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanlytics import __about__, app_routes
from spanlytics._json import dumps
from spanlytics._process import reset_in_child
from spanlytics._throttle import ThrottledLogger
from spanlytics.delivery.batches import Batch
from spanlytics.delivery.sender import Sender, retry_after_s
from spanlytics.delivery.settings import SenderSettings
from spanlytics.destinations.apitally.aggregation import Aggregator
from spanlytics.destinations.apitally.options import ApitallyOptions
from spanlytics.destinations.apitally.process_facts import rss_bytes
from spanlytics.destinations.apitally.request_log import (
    MAX_LOG_FILE_BYTES,
    LogFile,
    RequestLogEncoder,
    is_uuid,
)
from spanlytics.worker import BackgroundWorker

if TYPE_CHECKING:
    import requests

    from spanlytics.config import Settings
    from spanlytics.record import RequestRecord

_logger = logging.getLogger("spanlytics.apitally")
_log = ThrottledLogger(_logger)

HUB_VERSION = "v2"
SYNC_INTERVAL_S = 60.0
INITIAL_SYNC_INTERVAL_S = 10.0
INITIAL_PERIOD_S = 3600.0
MAX_SYNC_AGE_S = 3600.0  # the client drops sync data older than this; the spool does too

# --- process facts ------------------------------------------------------------------------


class ResourceSampler:
    """CPU % since the last sample and current RSS; None the first time, as the client."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def sample(self) -> dict[str, float | int] | None:
        times = os.times()
        now = (time.monotonic(), times.user + times.system)
        last, self._last = self._last, now
        rss = rss_bytes()
        if last is None or rss is None or now[0] <= last[0]:
            return None
        cpu = (now[1] - last[1]) / (now[0] - last[0]) * 100.0
        return {"cpu_percent": round(cpu, 1), "memory_rss": rss}


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
            if not is_uuid(content):
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
        self, options: ApitallyOptions, settings: SenderSettings, trust_forwarded: bool = False
    ) -> None:
        """``options.client_id`` is required; ``settings`` carry the hub's base URL."""
        if options.client_id is None:
            raise ValueError("the apitally destination needs a client id")
        self.client_id = str(uuid.UUID(options.client_id))
        self.env = env = options.env
        self.options = options
        self.encoder = RequestLogEncoder(options, trust_forwarded)
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
        # registered before the timer's own fork hook: a child's timer starts on fresh state
        reset_in_child(self, ApitallyDestination._reset_child)
        self._timer = BackgroundWorker(
            "spanlytics-apitally",
            self._tick,
            interval_s=self._next_tick_s,
            recovery_pause_s=SYNC_INTERVAL_S,  # a failing interval or tick: the regular sync period
            restart_in_child=True,
        )
        self._timer.start()

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
        self._timer_announced = False  # the timer's first tick announces, the others sync

    def _reset_child(self) -> None:
        self._reset()
        self.slot.reacquire()
        timer = getattr(self, "_timer", None)  # None while the constructor runs
        if timer is not None:
            timer.reset_after_fork()  # a fork without at-fork hooks: restart it here

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

    def _next_tick_s(self) -> float:
        # the client announces at once; a second lets the app add its routes first
        return self.sync_interval_s() if self._timer_announced else 1.0

    def _tick(self) -> None:
        if not self._timer_announced:
            self._timer_announced = True
            try:
                with self._lock:
                    self._announce()
            except Exception as exc:  # the next sync announces again
                _log.failure("announce", "spanlytics apitally: startup message failed", exc)
            return
        self._sync(always=True)  # it logs its own errors

    def _payload(self, data: dict[str, Any]) -> bytes:
        message = {"instance_uuid": self.instance_uuid, "message_uuid": str(uuid.uuid4()), **data}
        return dumps(message)

    def _announce(self) -> None:
        """The startup message, once per process and again when another app registers."""
        current = app_routes.version()
        if current == self._announced_version:
            return
        self._announced_version = current
        info = app_routes.apps_info()
        framework = info.framework_or_guess()
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
                self._timer.stop()  # on the sender's thread: only asks
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
        self._timer.stop(timeout_s)
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


def build_apitally(settings: Settings, options: ApitallyOptions) -> ApitallyDestination:
    """The registry's factory: the hub's URL from the options, delivery from the core settings."""
    sender = SenderSettings.from_settings(settings, options.base_url)
    return ApitallyDestination(options, sender, settings.trust_forwarded_headers)
