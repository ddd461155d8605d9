"""A loopback OTLP/HTTP receiver for all three signals, decoding the protobuf it is sent
(``opentelemetry-proto``), that can be taken down and brought back on the same port.

Traces are decoded by :class:`tests.support.otlp_receiver.OTLPReceiver` (the same dicts);
log records and metric points are decoded here::

    with otlp_collector() as collector:
        env = collector.exporter_env()      # OTEL_EXPORTER_OTLP_*_ENDPOINT for a subprocess
        ...
        collector.down()                     # connections refused from now on
        collector.up()                       # the same port again
        collector.logs, collector.points("spanlytics.request.duration")
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.support.otlp_receiver import OTLPReceiver, _value, serve


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _items(groups: Any, scopes: str, items: str) -> Iterator[tuple[dict[str, Any], str, Any]]:
    """(resource attributes, scope name, item) of every log record or metric in an export."""
    for group in groups:
        resource = _attributes(group.resource.attributes)
        for scoped in getattr(group, scopes):
            for item in getattr(scoped, items):
                yield resource, scoped.scope.name, item


class OTLPCollector(OTLPReceiver):
    """Every span, log record and histogram point received, as plain dicts."""

    def __init__(self) -> None:
        super().__init__()
        self.logs: list[dict[str, Any]] = []
        self.metric_points: list[dict[str, Any]] = []
        self.raw: list[tuple[str, bytes]] = []  # (path, decompressed payload): to search for secrets
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    def handle_logs(self, body: bytes) -> None:
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        logs = [
            {
                "time": log.time_unix_nano,
                "severity_number": log.severity_number,
                "severity_text": log.severity_text,
                "event_name": getattr(log, "event_name", ""),
                "trace_id": log.trace_id.hex(),
                "span_id": log.span_id.hex(),
                "flags": log.flags,
                "attributes": _attributes(log.attributes),
                "body": _value(log.body),
                "scope": scope,
                "resource": resource,
            }
            for resource, scope, log in _items(request.resource_logs, "scope_logs", "log_records")
        ]
        with self._lock:
            self.logs.extend(logs)

    def handle_metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        points = [
            {
                "name": metric.name,
                "unit": metric.unit,
                "temporality": metric.histogram.aggregation_temporality,
                "attributes": _attributes(point.attributes),
                "count": point.count,
                "sum": point.sum,
                "bounds": tuple(point.explicit_bounds),
                "start": point.start_time_unix_nano,
                "time": point.time_unix_nano,
                "scope": scope,
                "resource": resource,
            }
            for resource, scope, metric in _items(request.resource_metrics, "scope_metrics", "metrics")
            if metric.WhichOneof("data") == "histogram"
            for point in metric.histogram.data_points
        ]
        with self._lock:
            self.metric_points.extend(points)

    def receive(self, path: str, body: bytes, encoding: str | None) -> bytes:
        """Decode one export; returns the (empty) protobuf answer."""
        if encoding == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.raw.append((path, body))
        if path.endswith("/v1/logs"):
            self.handle_logs(body)
            return ExportLogsServiceResponse().SerializeToString()
        if path.endswith("/v1/metrics"):
            self.handle_metrics(body)
            return ExportMetricsServiceResponse().SerializeToString()
        self.handle(body, None)
        return ExportTraceServiceResponse().SerializeToString()

    # -- what a test reads ------------------------------------------------------------------

    def event_logs(self, event_name: str = "spanlytics.request") -> list[dict[str, Any]]:
        """The log records of one event name (in the record, or as the ``event.name`` attribute)."""
        with self._lock:
            logs = list(self.logs)
        return [
            log for log in logs if (log["event_name"] or log["attributes"].get("event.name")) == event_name
        ]

    def points(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for p in self.metric_points if p["name"] == name]

    def delta_counts(self, name: str, keys: tuple[str, ...]) -> dict[tuple[Any, ...], int]:
        """Counts per attribute tuple, summing DELTA points (every export adds its own)."""
        counts: dict[tuple[Any, ...], int] = {}
        for point in self.points(name):
            assert point["temporality"] == 1, "delta temporality expected"  # AGGREGATION_TEMPORALITY_DELTA
            key = tuple(point["attributes"].get(k) for k in keys)
            counts[key] = counts.get(key, 0) + point["count"]
        return {k: v for k, v in counts.items() if v}

    def cumulative_counts(self, name: str, keys: tuple[str, ...]) -> dict[tuple[Any, ...], int]:
        """Counts per attribute tuple from CUMULATIVE points of one process: the latest wins."""
        latest: dict[tuple[Any, ...], tuple[int, int]] = {}
        for point in self.points(name):
            assert point["temporality"] == 2, "cumulative temporality expected"
            key = tuple(point["attributes"].get(k) for k in keys)
            if point["time"] >= latest.get(key, (-1, 0))[0]:
                latest[key] = (point["time"], point["count"])
        return {k: count for k, (_, count) in latest.items() if count}

    def payloads(self, *paths: str) -> bytes:
        """Every payload received (on ``paths`` only, e.g. ``"/v1/logs"``), joined."""
        with self._lock:
            return b"\n".join(body for path, body in self.raw if not paths or path in paths)

    # -- the server -------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exporter_env(self) -> dict[str, str]:
        """The OTLP/HTTP exporters' endpoint variables for a subprocess."""
        return {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{self.endpoint}/v1/traces",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{self.endpoint}/v1/logs",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{self.endpoint}/v1/metrics",
        }

    def up(self) -> None:
        """Listen (again, on the same port after :meth:`down`)."""
        self._server = serve(self.receive, self.port)
        self.port = int(self._server.server_address[1])

    def down(self) -> None:
        """Stop listening: exporters get connection errors until :meth:`up`."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


@contextmanager
def otlp_collector() -> Iterator[OTLPCollector]:
    collector = OTLPCollector()
    collector.up()
    try:
        yield collector
    finally:
        collector.down()
