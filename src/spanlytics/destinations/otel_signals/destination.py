"""The otel destination: masked records as log records and histogram points, through the
global (or given) ``LoggerProvider`` and ``MeterProvider``::

    destination = OtelDestination(OtelOptions())
    destination.export(records)   # on spanlytics' worker; never raises
    destination.force_flush()     # flushes the providers it found (the SDK then exports)
    destination.shutdown()        # flushes them too; the providers are the app's: never shut down

Each provider is looked up at the first export, and again at every export while it is
missing: ``opentelemetry-instrument`` sets the global providers after spanlytics is built
(its configurator sets up traces, whose exporter builds spanlytics, before logs and
metrics). A placeholder provider (the API's proxy before anything is set, or a no-op one)
gets one warning per signal; that signal's data is dropped and counted meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from opentelemetry import metrics
from opentelemetry._logs import Logger, LoggerProvider, get_logger_provider

from spanlytics.__about__ import VERSION
from spanlytics._process import reset_in_child
from spanlytics._throttle import ThrottledLogger
from spanlytics.destinations.otel_signals.consumer_metrics import ConsumerInstruments
from spanlytics.destinations.otel_signals.log_records import log_record
from spanlytics.destinations.otel_signals.options import OtelOptions
from spanlytics.record import RequestRecord

__all__ = ["SCOPE", "OtelDestination", "is_placeholder"]

_logger = logging.getLogger("spanlytics.exporter")
_log = ThrottledLogger(_logger)

T = TypeVar("T")

SCOPE = "spanlytics"
"""The instrumentation scope of the log records and instruments."""

_PLACEHOLDERS = frozenset(
    {"ProxyLoggerProvider", "NoOpLoggerProvider", "_ProxyMeterProvider", "NoOpMeterProvider"}
)
"""The API's stand-ins for a missing provider (by name: the proxies are private classes)."""

_HINTS = {
    "logs": "set OTEL_LOGS_EXPORTER (e.g. otlp_proto_http) under opentelemetry-instrument, "
    "or call opentelemetry._logs.set_logger_provider() with an SDK LoggerProvider",
    "metrics": "set OTEL_METRICS_EXPORTER (e.g. otlp_proto_http) under opentelemetry-instrument, "
    "or call opentelemetry.metrics.set_meter_provider() with an SDK MeterProvider",
}


def is_placeholder(provider: object) -> bool:
    """Whether ``provider`` is the API's proxy or no-op stand-in rather than a real provider."""
    return type(provider).__name__ in _PLACEHOLDERS


class OtelDestination:
    """Log records and consumer metrics through the app's OpenTelemetry providers.

    ``logger_provider`` and ``meter_provider`` default to the global ones, looked up lazily.
    """

    name = "otel"

    def __init__(
        self,
        options: OtelOptions | None = None,
        *,
        logger_provider: LoggerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.options = options or OtelOptions()
        self._given_logger_provider = logger_provider
        self._given_meter_provider = meter_provider
        self._logger_provider: LoggerProvider | None = None
        self._meter_provider: metrics.MeterProvider | None = None
        self._otel_logger: Logger | None = None
        self._instruments: ConsumerInstruments | None = None
        self._warned: set[str] = set()
        self._stopped = False
        self.dropped = {"logs": 0, "metrics": 0}
        """Records whose log record or metric points were not emitted (no provider, errors)."""
        reset_in_child(self, OtelDestination._after_fork)

    def _after_fork(self) -> None:
        if self._instruments is not None:  # a forked worker fills its own consumer slots
            self._instruments.consumers.reset()
            self._instruments.groups.reset()

    # -- lazy lookup ------------------------------------------------------------------------

    def _missing(self, signal: str) -> None:
        if signal not in self._warned:
            self._warned.add(signal)
            _logger.warning(
                "the otel destination found no OpenTelemetry %s provider, so spanlytics' %s are "
                "dropped until one is set: %s",
                "logger" if signal == "logs" else "meter",
                "request log records" if signal == "logs" else "consumer metrics",
                _HINTS[signal],
            )

    def _logger(self) -> Logger | None:
        if self._otel_logger is None:
            provider = self._given_logger_provider or get_logger_provider()
            if is_placeholder(provider):
                self._missing("logs")
                return None
            self._logger_provider = provider
            self._otel_logger = provider.get_logger(SCOPE, VERSION)
        return self._otel_logger

    def _metrics(self) -> ConsumerInstruments | None:
        if self._instruments is None:
            provider = self._given_meter_provider or metrics.get_meter_provider()
            if is_placeholder(provider):
                self._missing("metrics")
                return None
            self._meter_provider = provider
            meter = provider.get_meter(SCOPE, VERSION)
            self._instruments = ConsumerInstruments(meter, self.options.max_consumers)
        return self._instruments

    # -- the Destination protocol -----------------------------------------------------------

    def export(self, records: Sequence[RequestRecord]) -> None:
        if self.options.logs:
            logger = self._found("logs", self._logger, records)
            if logger is not None:
                self._each("logs", records, lambda record: logger.emit(log_record(record)))
        if self.options.metrics:
            instruments = self._found("metrics", self._metrics, records)
            if instruments is not None:
                self._each("metrics", records, instruments.record)

    def _found(
        self, signal: str, lookup: Callable[[], T | None], records: Sequence[RequestRecord]
    ) -> T | None:
        """The signal's logger or instruments; None (``records`` counted as dropped) when
        stopped or there is no provider."""
        found = None
        try:
            found = None if self._stopped else lookup()
        except Exception as exc:
            _log.failure(f"otel.{signal}.provider", f"could not set up the {signal} signal", exc)
        if found is None:
            self.dropped[signal] += len(records)
        return found

    def _each(
        self, signal: str, records: Sequence[RequestRecord], emit: Callable[[RequestRecord], None]
    ) -> None:
        for record in records:
            try:
                emit(record)
            except Exception as exc:  # one bad record costs itself
                self.dropped[signal] += 1
                _log.failure(f"otel.{signal}.emit", f"could not emit a request's {signal}", exc)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Flush the providers this destination emitted to (their processors and readers
        export then); True when every flush reported success."""
        ok = True
        for provider in (self._logger_provider, self._meter_provider):
            flush: Any = getattr(provider, "force_flush", None)
            if flush is None:
                continue
            try:
                ok = flush(timeout_millis=max(int(timeout_s * 1000), 1)) is not False and ok
            except Exception as exc:
                ok = False
                _log.failure("otel.flush", "an OpenTelemetry provider failed to flush", exc)
        return ok

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush what was emitted; idempotent. The providers belong to the app: they stay up."""
        if self._stopped:
            return
        self.force_flush(timeout_s)
        self._stopped = True
