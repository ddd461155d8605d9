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
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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

from tests.support.otlp_receiver import OTLPReceiver, _value


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # up() again on the port that down() closed
    daemon_threads = True


class OTLPCollector(OTLPReceiver):
    """Every span, log record and histogram point received, as plain dicts."""

    def __init__(self) -> None:
        super().__init__()
        self.logs: list[dict[str, Any]] = []
        self.metric_points: list[dict[str, Any]] = []
        self.raw: list[bytes] = []  # every decompressed payload, to search for secrets
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    def handle_logs(self, body: bytes) -> None:
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        logs = []
        for resource_logs in request.resource_logs:
            resource = _attributes(resource_logs.resource.attributes)
            for scope_logs in resource_logs.scope_logs:
                for log in scope_logs.log_records:
                    logs.append(
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
                            "scope": scope_logs.scope.name,
                            "resource": resource,
                        }
                    )
        with self._lock:
            self.logs.extend(logs)

    def handle_metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        points = []
        for resource_metrics in request.resource_metrics:
            resource = _attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.WhichOneof("data") != "histogram":
                        continue
                    for point in metric.histogram.data_points:
                        points.append(
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
                                "scope": scope_metrics.scope.name,
                                "resource": resource,
                            }
                        )
        with self._lock:
            self.metric_points.extend(points)

    def receive(self, path: str, body: bytes, encoding: str | None) -> bytes:
        """Decode one export; returns the (empty) protobuf answer."""
        if encoding == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.raw.append(body)
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

    def payloads(self) -> bytes:
        with self._lock:
            return b"\n".join(self.raw)

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
        collector = self

        class Handler(BaseHTTPRequestHandler):  # HTTP/1.0: one request per connection, so
            # that down() leaves no kept-alive connection served behind it

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                payload = collector.receive(self.path, body, self.headers.get("Content-Encoding"))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _Server(("127.0.0.1", self.port), Handler)
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

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
