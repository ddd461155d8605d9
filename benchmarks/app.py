"""The app the request-path benchmark serves: one FastAPI JSON endpoint, three variants.

``BENCH_VARIANT``: ``bare`` (no instrumentation), ``otel`` (the FastAPI instrumentor on an
SDK provider with a BatchSpanProcessor to a no-op exporter, as a real pipeline has) or
``spanlytics`` (the same, plus ``spanlytics.configure()`` and ``instrument_app()``: full
request logging with headers, bodies and masking to the local store).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fastapi import FastAPI, Request
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

VARIANT = os.environ.get("BENCH_VARIANT", "otel")
ITEM = {
    "id": 1,
    "name": "Anvil",
    "description": "Drop-forged, 50 kg " * 10,
    "tags": ["tools", "heavy", "classic"],
    "price": 129.0,
    "stock": [{"warehouse": f"w{i}", "count": i * 3} for i in range(10)],
}


class DiscardExporter(SpanExporter):
    """Stands in for an OTLP exporter without network I/O."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, object]:
    return {**ITEM, "id": item_id}


@app.post("/items")
async def create(request: Request) -> dict[str, object]:
    return {"received": len(await request.body())}


if VARIANT != "bare":
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardExporter()))
    trace.set_tracer_provider(provider)
    if VARIANT == "spanlytics":
        import spanlytics

        spanlytics.configure()
        spanlytics.instrument_app(app)
    else:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app)
