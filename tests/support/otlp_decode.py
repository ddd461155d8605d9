"""OTLP/HTTP protobuf bodies (as :class:`~tests.support.ingest_stub.IngestStub` received them,
gzip already undone) decoded into plain dicts: spans, log records and metric data points,
each with its resource and scope, so tests compare them as values."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.ingest_stub import Received


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def attributes(key_values: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in key_values}


def _items(received: Iterable[Received], signal: str) -> Iterator[tuple[Any, str, dict[str, Any]]]:
    """``(item, scope name, resource attributes)`` for every span, log record or metric that
    the receiver accepted on ``/v1/<signal>``."""
    request_class, resources, scopes, items = _SIGNALS[signal]
    for r in received:
        if r.path.startswith(f"/v1/{signal}") and r.accepted:
            for resource_items in getattr(request_class.FromString(r.body), resources):
                resource = attributes(resource_items.resource.attributes)
                for scope_items in getattr(resource_items, scopes):
                    for item in getattr(scope_items, items):
                        yield item, scope_items.scope.name, resource


_SIGNALS: dict[str, tuple[Any, str, str, str]] = {
    "traces": (ExportTraceServiceRequest, "resource_spans", "scope_spans", "spans"),
    "logs": (ExportLogsServiceRequest, "resource_logs", "scope_logs", "log_records"),
    "metrics": (ExportMetricsServiceRequest, "resource_metrics", "scope_metrics", "metrics"),
}


def spans(received: Iterable[Received]) -> list[dict[str, Any]]:
    return [
        {
            "name": span.name,
            "kind": span.kind,
            "flags": span.flags,
            "trace_id": span.trace_id.hex(),
            "span_id": span.span_id.hex(),
            "duration_ns": span.end_time_unix_nano - span.start_time_unix_nano,
            "attributes": attributes(span.attributes),
            "events": [(e.name, attributes(e.attributes)) for e in span.events],
            "status": (span.status.code, span.status.message),
            "scope": scope,
            "resource": resource,
        }
        for span, scope, resource in _items(received, "traces")
    ]


def _json(body: Any) -> Any:
    return json.loads(body) if isinstance(body, str) and body.startswith("{") else None


def log_records(received: Iterable[Received]) -> list[dict[str, Any]]:
    return [
        {
            "event_name": record.event_name,
            "body": value(record.body),
            "json": _json(value(record.body)),
            "attributes": attributes(record.attributes),
            "trace_id": record.trace_id.hex(),
            "scope": scope,
            "resource": resource,
        }
        for record, scope, resource in _items(received, "logs")
    ]


def events(received: Iterable[Received], name: str) -> list[dict[str, Any]]:
    return [r for r in log_records(received) if r["event_name"] == name]


def metric_points(received: Iterable[Received]) -> list[dict[str, Any]]:
    """One dict per data point: the metric's name, unit and type, the point as protobuf's
    JSON mapping gives it (``attributes`` decoded), its resource and scope."""
    found = []
    for metric, scope, resource in _items(received, "metrics"):
        kind = metric.WhichOneof("data")
        data = getattr(metric, kind)
        for point in data.data_points:
            as_dict = MessageToDict(point, preserving_proto_field_name=True)
            as_dict["attributes"] = attributes(point.attributes)
            found.append(
                {
                    "name": metric.name,
                    "unit": metric.unit,
                    "type": kind,
                    "temporality": getattr(data, "aggregation_temporality", None),
                    "point": as_dict,
                    "scope": scope,
                    "resource": resource,
                }
            )
    return found
