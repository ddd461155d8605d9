"""Background path throughput: finished span + capture -> RequestRecord -> mask -> local store.

Each request carries a 1 KB JSON request body and a 1 KB JSON response body (with a password
and a token to mask), realistic headers (with an Authorization header) and a query string.
Prints records/s for each stage and for the whole path, on one thread; then the same path
through the real pipeline: the span processor's ``on_end`` (the request path's share) and
the pipeline's worker thread building, masking and storing the records, chunk by chunk.

    .venv/bin/python benchmarks/bench_background.py [--records 20000] [--batch 512]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from spanlytics import SpanlyticsExporter, SpanlyticsProcessor
from spanlytics.capture.store import STORE, Capture
from spanlytics.destinations.local import LocalStore
from spanlytics.masking import Masker
from spanlytics.record import RequestRecord, from_span

REQUEST_HEADERS = (
    ("host", "127.0.0.1:8000"),
    ("content-type", "application/json"),
    ("content-length", "1024"),
    ("authorization", "Bearer sk_live_abcdef0123456789"),
    ("user-agent", "bench/1.0"),
    ("accept", "application/json"),
    ("x-request-id", "req-123"),
)
"""Realistic request headers, with an Authorization header to mask."""


def json_body(seed: int, secret_key: str) -> bytes:
    doc = {
        "id": seed,
        "customer": {"name": f"Customer {seed}", "email": f"c{seed}@example.com", "tier": "gold"},
        "items": [{"sku": f"SKU-{seed}-{i}", "qty": i + 1, "price": 9.99 * (i + 1)} for i in range(8)],
        secret_key: f"s3cr3t-{seed:08d}",
        "note": "x" * 200,
    }
    raw = json.dumps(doc).encode()
    return raw[:1024] if len(raw) > 1024 else raw + b" " * (1024 - len(raw))


def make_inputs(count: int) -> list[tuple[ReadableSpan, Capture]]:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(count):
        attrs = {
            "http.method": "POST",
            "http.scheme": "http",
            "http.host": "127.0.0.1:8000",
            "http.target": f"/orders/{i}",
            "http.route": "/orders/{order_id}",
            "http.status_code": 201,
            "http.flavor": "1.1",
            "net.peer.ip": "127.0.0.1",
            "http.user_agent": "bench/1.0",
        }
        with tracer.start_as_current_span("POST /orders/{order_id}", kind=SpanKind.SERVER, attributes=attrs):
            pass
    inputs = []
    headers = REQUEST_HEADERS
    for i, span in enumerate(memory.get_finished_spans()):
        capture = Capture(
            "POST",
            f"/orders/{i}",
            "expand=items&api_key=qs-secret",
            "http",
            headers,
            bodies=True,
            limit=64 * 1024,
            declared_request_size=1024,
            client_ip="127.0.0.1",
        )
        capture.add_request_chunk(json_body(i, "password"), 1024)
        capture.status = 201
        capture.response_headers = (("content-type", "application/json"), ("content-length", "1024"))
        capture.add_response_chunk(json_body(i, "access_token"))
        capture.done = True
        inputs.append((span, capture))
    return inputs


def timed(label: str, count: int, fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    rate = count / elapsed
    print(f"{label:<34} {rate:>10,.0f} records/s   ({elapsed * 1e6 / count:6.1f} us/record)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    inputs = make_inputs(args.records)
    masker = Masker()
    records: list[RequestRecord] = []
    masked: list[RequestRecord] = []

    def build() -> None:
        records.extend(r for r in (from_span(s, c.snapshot()) for s, c in inputs) if r is not None)

    def mask() -> None:
        masked.extend(masker.mask_record(r) for r in records)

    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp) / "bench.db")

        def write() -> None:
            for i in range(0, len(masked), args.batch):
                store.export(masked[i : i + args.batch])

        print(f"{args.records:,} requests, 1 KB JSON bodies both ways, batches of {args.batch}")
        timed("record (from_span)", args.records, build)
        timed("mask", args.records, mask)
        timed("local store (SQLite, WAL)", args.records, write)
        assert '"password":"[masked]"' in (masked[0].request_body or "")
        store.shutdown()

        store2 = LocalStore(Path(tmp) / "bench2.db")

        def whole() -> None:
            for i in range(0, len(inputs), args.batch):
                chunk = inputs[i : i + args.batch]
                built = (from_span(s, c.snapshot()) for s, c in chunk)
                batch = [masker.mask_record(r) for r in built if r is not None]
                store2.export(batch)

        timed("whole path: record -> mask -> store", args.records, whole)
        store2.shutdown()
        through_the_pipeline(inputs, args.batch, Path(tmp) / "bench3.db")


def through_the_pipeline(inputs: list[tuple[ReadableSpan, Capture]], batch: int, db: Path) -> None:
    """``on_end`` for each span of a chunk (its capture registered as ``on_start`` would), then
    ``force_flush``: the worker wakes as spans arrive, the flush hands on the rest. A chunk at a
    time, so the side channel never evicts a capture and every record carries its bodies.

    Then the request path's share alone: ``on_end`` timed over chunks smaller than the
    worker's wake-up size (flushed in between, untimed), so the worker does not compete for
    the GIL while it is timed; the median chunk is printed."""
    exporter = SpanlyticsExporter(destinations=[LocalStore(db)], batch_size=batch)
    processor = SpanlyticsProcessor(exporter)

    def feed(chunk: list[tuple[ReadableSpan, Capture]]) -> float:
        for span, capture in chunk:
            STORE.register(span.context.span_id, capture)  # type: ignore[union-attr]
        started = time.perf_counter()
        for span, _ in chunk:
            processor.on_end(span)
        elapsed = time.perf_counter() - started
        assert processor.force_flush()
        return elapsed

    def run() -> None:
        for i in range(0, len(inputs), batch):
            feed(inputs[i : i + batch])

    timed("pipeline: on_end -> worker -> store", len(inputs), run)
    stats = exporter.stats()
    assert stats["records_exported"] == len(inputs) and stats["captures_evicted"] == 0, stats
    size = 31  # below WAKE_AT (32): the worker sleeps while on_end is timed
    chunks = sorted(feed(inputs[i : i + size]) / size for i in range(0, len(inputs) - size + 1, size))
    print(f"{'on_end (request path), median':<34} {chunks[len(chunks) // 2] * 1e6:>26.2f} us/span")
    processor.shutdown()


if __name__ == "__main__":
    main()
