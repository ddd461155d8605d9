"""A real OTLP/HTTP trace receiver on 127.0.0.1 that decodes the protobuf it is sent."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


class OTLPReceiver:
    """Collects every span it receives as a plain dict."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self._lock = threading.Lock()

    def handle(self, body: bytes, encoding: str | None) -> None:
        if encoding == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        {
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "flags": span.flags,
                            "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                            "events": [
                                (e.name, {kv.key: _value(kv.value) for kv in e.attributes})
                                for e in span.events
                            ],
                            "status": span.status.code,
                            "scope": scope_spans.scope.name,
                            "resource": resource,
                        }
                    )
        with self._lock:
            self.spans.extend(spans)
            self.requests += 1

    def server_spans(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.spans if s["kind"] == 2]  # SPAN_KIND_SERVER


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # a receiver brought back on the port it closed
    daemon_threads = True


def serve(receive: Callable[[str, bytes, str | None], bytes], port: int = 0) -> ThreadingHTTPServer:
    """An HTTP/1.0 server on 127.0.0.1 (one request per connection: once it is shut down, no
    kept-alive connection is served behind it) answering every POST with 200 and what
    ``receive(path, body, content_encoding)`` returns."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            payload = receive(self.path, body, self.headers.get("Content-Encoding"))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextmanager
def otlp_receiver() -> Iterator[tuple[OTLPReceiver, str]]:
    """Yields the receiver and its traces endpoint URL."""
    receiver = OTLPReceiver()

    def receive(path: str, body: bytes, encoding: str | None) -> bytes:
        receiver.handle(body, encoding)
        return ExportTraceServiceResponse().SerializeToString()

    server = serve(receive)
    try:
        yield receiver, f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()
