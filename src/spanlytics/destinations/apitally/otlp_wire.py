"""OTLP/protobuf pieces shared by the Apitally 1.x encoders: attribute values, the resource and
scope, and the envelope that wraps encoded items into one export request.

The three export requests have one shape, field numbers included::

    Export{Trace,Logs,Metrics}ServiceRequest { 1: Resource{Spans,Logs,Metrics} {
        1: Resource, 2: Scope{Spans,Logs,Metrics} { 1: InstrumentationScope, 2: item* } } }

so items (a ``Span``, a ``LogRecord``, a ``Metric``) are serialized once, when a record is
encoded, and :func:`envelope` frames any number of them under one resource and scope without
parsing them again (concatenated length-delimited fields are a valid repeated field).

>>> from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
>>> from opentelemetry.proto.trace.v1.trace_pb2 import Span
>>> spans = [Span(name="GET /").SerializeToString()]
>>> body = envelope(resource_bytes({"service.name": "api"}), scope_bytes("x"), spans)
>>> ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans[0].name
'GET /'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

__all__ = ["add_attributes", "envelope", "resource_bytes", "scope_bytes", "set_any_value"]


def set_any_value(target: AnyValue, value: Any) -> None:
    """An attribute value as OTLP encodes it (bool before int: bool is an int)."""
    if isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, (list, tuple)):
        target.array_value.SetInParent()
        for item in value:
            set_any_value(target.array_value.values.add(), item)
    elif isinstance(value, Mapping):
        target.kvlist_value.SetInParent()
        add_attributes(target.kvlist_value.values, value)
    else:  # None: an empty value that is still present, as OpenTelemetry encodes it
        target.SetInParent()


def add_attributes(key_values: Any, attributes: Mapping[str, Any]) -> None:
    """``attributes`` into a repeated ``KeyValue`` field."""
    for key, value in attributes.items():
        set_any_value(key_values.add(key=key).value, value)


def resource_bytes(attributes: Mapping[str, Any]) -> bytes:
    resource = Resource()
    add_attributes(resource.attributes, attributes)
    serialized: bytes = resource.SerializeToString()
    return serialized


def scope_bytes(name: str, version: str = "") -> bytes:
    serialized: bytes = InstrumentationScope(name=name, version=version).SerializeToString()
    return serialized


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def envelope(resource: bytes, scope: bytes, items: Iterable[bytes]) -> bytes:
    """One export request: ``items`` (serialized spans, log records or metrics) under one
    resource and one scope."""
    scoped = _field(1, scope) + b"".join(_field(2, item) for item in items)
    return _field(1, _field(1, resource) + _field(2, scoped))
