"""OpenTelemetry destination (``SPANLYTICS_DESTINATIONS=otel``): masked records through the
app's own OTel pipelines, so that the Collector a team already runs carries them anywhere::

    OTEL_LOGS_EXPORTER=otlp_proto_http OTEL_METRICS_EXPORTER=otlp_proto_http \\
    OTEL_TRACES_EXPORTER=otlp_proto_http,spanlytics SPANLYTICS_DESTINATIONS=otel \\
    opentelemetry-instrument uvicorn app:app

* **Logs**: one log record per request (event name ``spanlytics.request``) through the global
  ``LoggerProvider``, correlated with the request's server span, timestamped at its start,
  with HTTP semantic-convention attributes, the consumer, and a structured body holding the
  masked headers and bodies and the masked-field notes (:mod:`.log_records`).
* **Metrics**: duration and body size histograms through the global ``MeterProvider``, by
  method, route, status code, consumer id (bounded: :class:`.consumer_metrics.ConsumerSlots`)
  and group (:mod:`.consumer_metrics`).

The providers are looked up when records are first exported, not at import or build time:
under ``opentelemetry-instrument`` the distro's configurator sets them after spanlytics is
imported. With none set (the API's proxy or no-op provider) the destination warns once per
signal and drops that signal's data, counted, until one is set. Everything runs on
spanlytics' background worker; the SDK's processors and readers own batching, retries and
export. The user's providers are flushed, never shut down, by this destination.

Modules: ``options`` (``otel_*`` settings), ``log_records`` (record -> log record, pure),
``consumer_metrics`` (the instruments and the consumer bound), ``destination``
(:class:`~.destination.OtelDestination`, the lazy provider lookup).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanlytics.destinations.otel_signals.options import OtelOptions

if TYPE_CHECKING:
    from spanlytics.config import Settings
    from spanlytics.destinations.otel_signals.destination import OtelDestination

__all__ = ["OtelOptions", "build_otel"]


def build_otel(settings: Settings, options: OtelOptions) -> OtelDestination:
    """The registry's factory (the SDK-facing modules load when the destination is built)."""
    from spanlytics.destinations.otel_signals.destination import OtelDestination

    return OtelDestination(options)
