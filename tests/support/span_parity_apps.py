"""Apps on a TracerProvider of the user's own, with or without spanlytics: span parity tests.

Environment:
* ``PARITY_USER_EXPORTER``: ``memory`` (an InMemorySpanExporter, read back at ``GET /spans``),
  ``otlp`` (OTLP/HTTP to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``none`` (spanlytics alone).
* ``PARITY_SPANLYTICS``: ``true`` sets spanlytics up in code (``configure()`` +
  ``instrument_app()``, which applies the instrumentors); otherwise the app is instrumented
  with the standard instrumentors' defaults, as a user without spanlytics would.
* ``PARITY_INTERNAL_SPANS``: ``true``/``false`` passed as ``instrument_app(internal_spans=...)``.
* ``PARITY_MEMORY_ADDED_LATE``: ``true`` adds the in-memory exporter in the FastAPI app's
  lifespan start-up, after spanlytics is set up and after the middleware stack is built.

``GET /spans`` (excluded from tracing through ``OTEL_PYTHON_EXCLUDED_URLS``) returns the
user exporter's finished spans and how many span ids the provider generated: one per span
started, which counts the spans made even when no exporter of the user's sees them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

import flask
from fastapi import FastAPI, Request
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

import spanlytics


class CountingIdGenerator(RandomIdGenerator):
    """Counts the spans the SDK starts (each takes one span id), whoever would export them."""

    def __init__(self) -> None:
        self.span_ids = 0
        self._lock = threading.Lock()

    def generate_span_id(self) -> int:
        with self._lock:
            self.span_ids += 1
        return super().generate_span_id()


ids = CountingIdGenerator()
provider = TracerProvider(id_generator=ids)
memory = InMemorySpanExporter()
user_exporter = os.environ.get("PARITY_USER_EXPORTER", "memory")
if user_exporter == "memory" and os.environ.get("PARITY_MEMORY_ADDED_LATE") != "true":
    provider.add_span_processor(SimpleSpanProcessor(memory))
elif user_exporter == "otlp":
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)


def spans_seen() -> dict[str, Any]:
    return {
        "spans": [(span.name, span.kind.name) for span in memory.get_finished_spans()],
        "span_ids": ids.span_ids,
    }


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if user_exporter == "memory" and os.environ.get("PARITY_MEMORY_ADDED_LATE") == "true":
        provider.add_span_processor(SimpleSpanProcessor(memory))
    yield


fastapi_app = FastAPI(lifespan=lifespan)


@fastapi_app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@fastapi_app.get("/spans")
def fastapi_spans() -> dict[str, Any]:
    return spans_seen()


@fastapi_app.post("/echo")
async def echo(request: Request) -> dict[str, Any]:
    return {"got": (await request.json())}


flask_app = flask.Flask(__name__)


@flask_app.get("/healthz")
def flask_healthz() -> dict[str, str]:
    return {"status": "ok"}


@flask_app.get("/spans")
def flask_spans() -> dict[str, Any]:
    return spans_seen()


@flask_app.post("/echo")
def flask_echo() -> dict[str, Any]:
    return {"got": flask.request.get_json()}


if os.environ.get("PARITY_SPANLYTICS") == "true":
    choice = os.environ.get("PARITY_INTERNAL_SPANS")
    keywords = {} if choice is None else {"internal_spans": choice == "true"}
    spanlytics.configure()
    spanlytics.instrument_app(fastapi_app, **keywords)
    spanlytics.instrument_app(flask_app)
else:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FastAPIInstrumentor.instrument_app(fastapi_app)
    FlaskInstrumentor().instrument_app(flask_app)
