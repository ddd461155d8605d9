"""Apitally 1.x: masked records as OTLP/HTTP protobuf to ``{otlp_endpoint}/v1/traces``,
``/v1/logs`` and ``/v1/metrics``, gzip, ``Authorization: Bearer <write token>`` and
``Apitally-Env: <env>``, as the ``apitally`` 1.0 SDK sends them (``apitally/shared/export.py``).

Each export cycle (15 s, then what the ``Apitally-Export-Interval`` answer header says, 5-60 s,
with the SDK's jitter) sends the sampled request spans, the events and the metrics of the
interval; spans also go out as soon as a megabyte of them is ready. Encoding runs on
spanlytics' background worker, delivery on :mod:`spanlytics.delivery.sender`: 408, 429, 5xx
and network errors are retried (queue, then spool) for up to an hour, another 4xx drops the
batch with one log line. These spans go to Apitally only: the app's own tracing pipeline
sees nothing of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

import requests

from spanlytics import __about__, app_routes
from spanlytics._process import reset_in_child
from spanlytics._throttle import ThrottledLogger
from spanlytics.delivery.answers import judge_answer
from spanlytics.delivery.batches import Batch
from spanlytics.delivery.sender import Answer, HttpTransport, Sender
from spanlytics.delivery.settings import SenderSettings
from spanlytics.destinations.apitally.options import ApitallyOptions
from spanlytics.destinations.apitally.otlp_events import (
    CONSUMER_UPDATE,
    STARTUP,
    ConsumerUpdates,
    ErrorEvents,
    log_record,
    startup_body,
)
from spanlytics.destinations.apitally.otlp_metrics import MAX_COMBINATIONS, ProcessGauges, RequestMetrics
from spanlytics.destinations.apitally.otlp_spans import SpanEncoder
from spanlytics.destinations.apitally.otlp_wire import envelope, resource_bytes, scope_bytes
from spanlytics.worker import BackgroundWorker

if TYPE_CHECKING:
    from spanlytics.config import Settings
    from spanlytics.record import RequestRecord

__all__ = ["ApitallyOtlpDestination", "OtlpTransport", "is_sampled", "resource_attributes"]

_logger = logging.getLogger("spanlytics.apitally")
_log = ThrottledLogger(_logger)

DISTRO_NAME = "spanlytics"
DEFAULT_EXPORT_INTERVAL_S = 15.0
INITIAL_EXPORT_DELAY_S = 2.0
EXPORT_INTERVAL_HEADER = "Apitally-Export-Interval"
MIN_EXPORT_INTERVAL_S, MAX_EXPORT_INTERVAL_S = 5.0, 60.0
MAX_AGE_S = 3600.0  # the SDK drops what it could not deliver within an hour (the dedup window)
MIN_GAUGE_SPACING_NS = 1_000_000_000
MAX_REQUEST_BYTES = 1_000_000  # spans per export request, before compression
_ID_LIMIT = 2**64


def is_sampled(trace_id: str, rate: float) -> bool:
    """The OpenTelemetry ratio sampler's test on the trace id's low 64 bits: services that
    sample at one rate keep the same traces, as the SDK's sampler does."""
    if rate >= 1.0:
        return True
    try:
        low = int(trace_id[-16:], 16)
    except ValueError:
        return False
    return low < round(rate * _ID_LIMIT)


def resource_attributes(env: str, instance_id: str) -> dict[str, Any]:
    """``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` and ``telemetry.sdk.*`` (the
    OpenTelemetry SDK's default resource), then the attributes Apitally needs, as the SDK."""
    from opentelemetry.sdk.resources import Resource

    attributes = dict(Resource.create({}).attributes)
    attributes.update(
        {
            "service.instance.id": instance_id,
            "deployment.environment.name": env,
            "telemetry.distro.name": DISTRO_NAME,
            "telemetry.distro.version": __about__.VERSION,
        }
    )
    return attributes


class OtlpTransport(HttpTransport):
    """POSTs a batch (protobuf, gzip) and reads the export interval from every answer; the
    answers mean what :func:`~spanlytics.delivery.answers.judge_answer` says, with no pause:
    the SDK drops a batch on 401 or 403 as on any other 4xx."""

    def __init__(self, name: str, settings: SenderSettings, on_interval: Callable[[float], None]) -> None:
        super().__init__(name, settings)
        self.on_interval = on_interval

    def send(self, batch: Batch) -> Answer:
        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False  # the endpoint is configured; no proxy lookups per send
        body = gzip.compress(batch.body, 6)
        headers = {
            **dict(self.settings.headers),
            "Content-Type": batch.content_type,
            "Content-Encoding": "gzip",
            "User-Agent": f"spanlytics/{__about__.VERSION}",
        }
        url = self.settings.base_url + batch.path
        timeout = (self.settings.connect_timeout_s, self.settings.read_timeout_s)
        try:
            response = self._session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            )
            response.close()
        except (requests.RequestException, OSError) as exc:
            _log.warning(
                f"otlp.error.{self.name}",
                "spanlytics %s: export failed (%s); will retry",
                self.name,
                type(exc).__name__,
            )
            return Answer("retry")
        self._read_interval(response.headers.get(EXPORT_INTERVAL_HEADER))
        outcome, wait, dropped = judge_answer(self.name, self.settings, url, response)
        return Answer(outcome, wait, dropped, len(body) if outcome == "sent" else 0)

    def _read_interval(self, value: str | None) -> None:
        if value:
            with contextlib.suppress(ValueError):
                seconds = float(int(value.strip()))
                self.on_interval(min(max(seconds, MIN_EXPORT_INTERVAL_S), MAX_EXPORT_INTERVAL_S))


class ApitallyOtlpDestination:
    """Masked records -> Apitally 1.x: sampled request spans, metrics of every request, events."""

    name = "apitally"

    def __init__(self, options: ApitallyOptions, settings: SenderSettings) -> None:
        """``options.write_token`` is required; ``settings`` carry the OTLP endpoint."""
        if not options.write_token:
            raise ValueError("the apitally 1.x protocol needs a write token")
        self.options = options
        self.env = options.env
        self.spans = SpanEncoder(options)
        self.interval_s = DEFAULT_EXPORT_INTERVAL_S
        sender_settings = dataclasses.replace(
            settings,
            headers=(("Authorization", f"Bearer {options.write_token}"), ("Apitally-Env", options.env)),
            gzip=True,
            spool_max_age_s=min(settings.spool_max_age_s, MAX_AGE_S),
            pause_statuses=frozenset(),
        )
        # read once: a forked child only takes a new instance id (no detectors run in a fork hook)
        self._resource_base = resource_attributes(self.env, "")
        transport = OtlpTransport(self.name, sender_settings, self.transport_interval)
        self.sender = Sender(self.name, sender_settings, transport=transport)
        self._reset()
        reset_in_child(self, ApitallyOtlpDestination._reset_child)
        self._timer = BackgroundWorker(
            "spanlytics-apitally-otlp", self._tick, interval_s=self._next_tick_s, restart_in_child=True
        )
        self._timer.start()

    def _reset(self) -> None:
        """Fresh state: at construction and in a forked child (a new instance, empty counts)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the pending spans and log records
        self._cycle_lock = threading.Lock()  # one cycle at a time: the timer's, a flush's
        self.instance_id = str(uuid.uuid4())
        self.resource = resource_bytes({**self._resource_base, "service.instance.id": self.instance_id})
        self._span_scope = scope_bytes(DISTRO_NAME, __about__.VERSION)
        self._apitally_scope = scope_bytes("apitally")
        self.metrics = RequestMetrics()
        self.gauges = ProcessGauges()
        self._gauged_ns = 0
        self.errors = ErrorEvents()
        self.consumers = ConsumerUpdates()
        self._spans: list[bytes] = []
        self._spans_size = 0
        self._logs: list[bytes] = []
        self._announced_version = -1
        self._random = random.Random()
        self._started = False

    def _reset_child(self) -> None:
        self._reset()
        timer = getattr(self, "_timer", None)  # None while the constructor runs
        if timer is not None:
            timer.reset_after_fork()

    def transport_interval(self, seconds: float) -> None:
        """The export interval Apitally asked for (called from the sender's thread)."""
        self.interval_s = seconds

    # -- the pipeline's side ------------------------------------------------------------------

    def export(self, records: Sequence[RequestRecord]) -> None:
        if self._pid != os.getpid():
            self._reset_child()
        try:
            full = self._add(records)
        except Exception as exc:  # never raise into the pipeline; never log values
            _log.failure("otlp.export", "spanlytics apitally: could not encode records", exc)
            return
        if full:
            self._submit_spans(full)

    def _add(self, records: Sequence[RequestRecord]) -> list[bytes]:
        """Count and encode ``records``; the spans to send at once when a request's worth is ready."""
        rate = self.options.sample_rate
        full: list[bytes] = []
        for record in records:
            self.metrics.add(record)
            self.errors.add(record)
            update = self.consumers.update(record)
            span = self.spans.encode(record) if is_sampled(record.trace_id, rate) else None
            with self._lock:
                if update is not None:
                    self._logs.append(log_record(CONSUMER_UPDATE, update))
                if span is not None:
                    self._spans.append(span)
                    self._spans_size += len(span)
                    if self._spans_size >= MAX_REQUEST_BYTES:
                        full, self._spans, self._spans_size = full + self._spans, [], 0
        return full

    def _submit_spans(self, spans: list[bytes]) -> None:
        body = envelope(self.resource, self._span_scope, spans)
        self.sender.submit(Batch(body, len(spans), "/v1/traces", "application/x-protobuf"))

    # -- the export cycle ---------------------------------------------------------------------

    def _next_tick_s(self) -> float:
        if not self._started:
            return INITIAL_EXPORT_DELAY_S
        return self.interval_s * self._random.uniform(0.9, 1.1)  # the SDK's jitter

    def _tick(self) -> None:
        self._started = True
        self._cycle()

    def _announce(self) -> None:
        """The startup event, once per process and again when another app registers."""
        current = app_routes.version()
        if current == self._announced_version:
            return
        self._announced_version = current
        info = app_routes.apps_info()
        framework = _framework(info)
        body = startup_body(framework, list(info.routes), _versions(framework), self.options, info.openapi)
        with self._lock:
            self._logs.append(log_record(STARTUP, body))

    def _cycle(self) -> None:
        """Everything of the interval to the sender: spans, events, then metrics."""
        if self._pid != os.getpid():
            self._reset_child()
        with self._cycle_lock:
            self._cycle_locked()

    def _cycle_locked(self) -> None:
        try:
            self._announce()
            events = [log_record(name, body) for name, body in self.errors.drain()]
            with self._lock:
                spans, self._spans, self._spans_size = self._spans, [], 0
                logs, self._logs = [*self._logs, *events], []
            if spans:
                self._submit_spans(spans)
            if logs:
                body = envelope(self.resource, self._apitally_scope, logs)
                self.sender.submit(Batch(body, len(logs), "/v1/logs", "application/x-protobuf"))
            now = time.time_ns()
            uncounted = self.metrics.dropped_combinations  # of this interval: collect starts the next
            metrics = self.metrics.collect(self.resource, self._apitally_scope, now)
            if uncounted:
                _log.warning(
                    "otlp.combinations",
                    "spanlytics apitally: more than %d method/route/status/consumer combinations in "
                    "one interval; %d request(s) were not counted (is the consumer a request id?)",
                    MAX_COMBINATIONS,
                    uncounted,
                )
            if now - self._gauged_ns >= MIN_GAUGE_SPACING_NS:  # flushes in a row: one sample
                self._gauged_ns = now
                metrics.insert(0, self.gauges.collect(self.resource, self._apitally_scope, now))
            for body in metrics:
                self.sender.submit(Batch(body, 0, "/v1/metrics", "application/x-protobuf"))
        except Exception as exc:  # the timer must go on; never log values
            _log.failure("otlp.cycle", "spanlytics apitally: export cycle failed", exc)

    # -- lifecycle ----------------------------------------------------------------------------

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        self._cycle()
        return self.sender.force_flush(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """A last cycle (the startup event too, if it was never sent), then delivery or the spool."""
        self._timer.stop(timeout_s)
        self._cycle()
        self.sender.shutdown(timeout_s)


def _framework(info: app_routes.AppInfo) -> str:
    """``app_routes`` tells Flask from Starlette; the SDK names FastAPI apps ``fastapi``."""
    if info.framework_or_guess() == "flask":
        return "flask"
    return "fastapi" if "fastapi" in sys.modules else "starlette"


def _versions(framework: str) -> dict[str, str]:
    packages = {"fastapi": ("fastapi", "starlette"), "flask": ("flask",)}.get(framework, ("starlette",))
    found = {}
    for package in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    found["spanlytics"] = __about__.VERSION
    return found


def build_apitally_otlp(settings: Settings, options: ApitallyOptions) -> ApitallyOtlpDestination:
    """The registry's factory for a write token: the endpoint from the options, delivery from
    the core settings."""
    return ApitallyOtlpDestination(options, SenderSettings.from_settings(settings, options.otlp_endpoint))
