"""exporter.py and processor.py: the span/capture join, bounds, isolation and lifecycle."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import flask
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import spanlytics
from spanlytics.record import RequestRecord
from tests.conftest import Pipeline


class ListDestination:
    """A real destination that keeps what it is given (for exporter-level tests)."""

    name = "list"

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def export(self, records: Sequence[RequestRecord]) -> None:
        self.records.extend(records)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        pass


def test_flask_stream_ends_span_before_body_and_record_waits_for_it(pipeline: Pipeline) -> None:
    release = threading.Event()

    app = flask.Flask(__name__)

    @app.get("/stream")
    def stream() -> flask.Response:
        def body() -> Iterator[bytes]:
            yield b'{"part": 1'
            release.wait(5)
            yield b', "token": "late-secret"}'

        return flask.Response(body(), content_type="application/json")

    FlaskInstrumentor.instrument_app(app, tracer_provider=pipeline.provider)
    spanlytics.instrument_app(app)
    response = app.test_client().get("/stream", buffered=False)
    iterator = iter(response.response)
    assert next(iterator) == b'{"part": 1'
    # Flask ended the server span already, but the body is still being sent.
    assert any(s.kind is SpanKind.SERVER for s in pipeline.user_exporter.get_finished_spans())
    assert pipeline.processor.force_flush()
    assert pipeline.processor.exporter.stats()["parked"] == 1
    release.set()
    assert list(iterator) == [b', "token": "late-secret"}']
    response.close()
    (record,) = pipeline.records()
    assert record.response_body == '{"part":1,"token":"[masked]"}'
    assert record.response_size == len(b'{"part": 1, "token": "late-secret"}')
    assert pipeline.processor.exporter.stats()["parked"] == 0


def test_user_exporter_sees_identical_spans_with_and_without_spanlytics(tmp_path: Path) -> None:
    def run(with_spanlytics: bool) -> list[tuple[str, Any, dict[str, Any]]]:
        provider = TracerProvider()
        user = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(user))
        app = FastAPI()

        @app.post("/login")
        async def login(request: Request) -> dict[str, str]:
            await request.json()
            return {"access_token": "tok-secret-value"}

        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
        if with_spanlytics:
            spanlytics.configure(tracer_provider=provider, local_path=str(tmp_path / "x.db"))
            spanlytics.instrument_app(app)
        client = TestClient(app)
        response = client.post(
            "/login?api_key=qs-secret",
            json={"password": "pw-secret"},
            headers={"Authorization": "Bearer hdr-secret", "X-Consumer-Id": "acme"},
        )
        assert response.json() == {"access_token": "tok-secret-value"}
        provider.shutdown()
        return [
            (s.name, s.kind, {k: v for k, v in (s.attributes or {}).items() if k != "net.peer.port"})
            for s in user.get_finished_spans()
        ]

    without, with_ = run(False), run(True)
    assert with_ == without
    flat = repr(with_)
    for secret in ("pw-secret", "tok-secret-value", "hdr-secret"):
        assert secret not in flat


def test_queue_is_bounded_and_drops_oldest(tmp_path: Path) -> None:
    destination = ListDestination()
    # the queue never reaches the wake-up size, and the flush interval is long: the worker
    # stays asleep while the spans are queued
    exporter = spanlytics.SpanlyticsExporter(
        destinations=[destination], max_queue_size=5, batch_size=100, flush_interval_s=3600
    )
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    for i in range(12):
        with tracer.start_as_current_span(
            f"GET /{i}", kind=SpanKind.SERVER, attributes={"http.method": "GET", "http.target": f"/{i}"}
        ):
            pass
    spans: list[ReadableSpan] = list(memory.get_finished_spans())
    exporter.export(spans)
    exporter.shutdown()
    assert [r.path for r in destination.records] == [f"/{i}" for i in range(7, 12)]
    stats = exporter.stats()
    assert stats["dropped_queue_full"] == 7 and stats["records_exported"] == 5
    assert exporter.export(spans[:1]) is SpanExportResult.FAILURE  # the SDK's convention
    assert exporter.stats()["dropped_after_shutdown"] == 1
    exporter.shutdown()  # idempotent


def test_configure_is_idempotent_and_keeps_user_processors(tmp_path: Path) -> None:
    provider = TracerProvider()
    user = SimpleSpanProcessor(InMemorySpanExporter())
    provider.add_span_processor(user)
    first = spanlytics.configure(tracer_provider=provider, local_path=str(tmp_path / "a.db"))
    second = spanlytics.configure(tracer_provider=provider, local_path=str(tmp_path / "b.db"))
    assert first is second and first is not None
    processors = provider._active_span_processor._span_processors
    assert processors == (user, first)
    assert spanlytics.configure(tracer_provider=provider, enabled=False) is None
    provider.shutdown()


def test_invalid_user_mask_pattern_disables_recording(caplog: Any) -> None:
    destination = ListDestination()
    exporter = spanlytics.SpanlyticsExporter(destinations=[destination], mask_fields=("unclosed(",))
    assert "spanlytics is disabled" in caplog.text
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span(
        "GET /", kind=SpanKind.SERVER, attributes={"http.method": "GET", "http.target": "/?password=x"}
    ):
        pass
    exporter.export(memory.get_finished_spans())
    exporter.shutdown()
    assert destination.records == []
    assert exporter.stats()["dropped_after_shutdown"] == 1


def test_records_are_built_in_slices_and_handed_on_in_batches(tmp_path: Path) -> None:
    # The worker wakes every WAKE_AT spans, but destinations get batches of batch_size (or
    # whatever is built when flushed): SQLite writes its pages once per batch, not per slice.
    from spanlytics.pipeline import WAKE_AT

    class BatchesDestination(ListDestination):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[int] = []

        def export(self, records: Sequence[RequestRecord]) -> None:
            self.batches.append(len(records))
            super().export(records)

    destination = BatchesDestination()
    exporter = spanlytics.SpanlyticsExporter(destinations=[destination], batch_size=WAKE_AT * 4)
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    for i in range(WAKE_AT * 5):
        with tracer.start_as_current_span(
            f"GET /{i}", kind=SpanKind.SERVER, attributes={"http.method": "GET", "http.target": f"/{i}"}
        ):
            pass
    for span in memory.get_finished_spans():
        exporter.export([span])  # the worker wakes at every WAKE_AT-th span
    assert exporter.force_flush()
    assert sum(destination.batches) == WAKE_AT * 5
    assert max(destination.batches) <= WAKE_AT * 4
    assert len(destination.batches) <= 3  # 5 slices in at most 2 full batches and the rest
    assert exporter.stats()["pending"] == 0 and exporter.stats()["queued"] == 0
    exporter.shutdown()


class UnreadableSpan(ReadableSpan):
    """A finished server span the worker cannot read (a broken SDK, another processor's bug)."""

    @property
    def context(self) -> Any:
        raise RuntimeError("unreadable span holding tok-secret-123")


def test_the_worker_survives_a_span_it_cannot_process(caplog: Any) -> None:
    import time

    from tests.support.servers import poll_until

    destination = ListDestination()
    exporter = spanlytics.SpanlyticsExporter(destinations=[destination], flush_interval_s=0.05)
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    for i in range(3):
        with tracer.start_as_current_span(
            f"GET /{i}", kind=SpanKind.SERVER, attributes={"http.method": "GET", "http.target": f"/{i}"}
        ):
            pass
    good = list(memory.get_finished_spans())
    exporter.export([UnreadableSpan("GET /bad", kind=SpanKind.SERVER), good[0]])
    poll_until(lambda: exporter.stats()["failed"] == 1, 10, "the bad span to be counted")
    exporter.export(good[1:])  # later spans: only the worker (no flush) can hand them on
    poll_until(lambda: len(destination.records) == 3, 10, "the records after the bad span")
    assert [r.path for r in destination.records] == ["/0", "/1", "/2"]
    assert "could not process a span" in caplog.text and "tok-secret-123" not in caplog.text
    started = time.monotonic()
    exporter.shutdown()
    assert time.monotonic() - started < 2.0
    assert exporter.stats()["failed"] == 1 and exporter.stats()["records_exported"] == 3


def _server_spans(provider: TracerProvider, count: int) -> None:
    tracer = provider.get_tracer("t")
    for i in range(count):
        with tracer.start_as_current_span(
            f"GET /{i}", kind=SpanKind.SERVER, attributes={"http.method": "GET", "http.target": f"/{i}"}
        ):
            pass


def test_the_processor_takes_over_the_exporters_feed() -> None:
    # The zero-code set-up: the SDK's span processor around our exporter (OTEL_TRACES_EXPORTER),
    # and our processor built on that same exporter (the post-instrument hook).
    from spanlytics.pipeline import Feed

    alone = ListDestination()
    exporter = spanlytics.SpanlyticsExporter(destinations=[alone])
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert exporter.pipeline.feed is Feed.EXPORTER
    _server_spans(provider, 3)
    assert exporter.force_flush() and len(alone.records) == 3  # export() feeds it
    provider.shutdown()

    both = ListDestination()
    exporter = spanlytics.SpanlyticsExporter(destinations=[both])
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    processor = spanlytics.SpanlyticsProcessor(exporter)
    provider.add_span_processor(processor)
    assert exporter.pipeline.feed is Feed.PROCESSOR and processor.pipeline is exporter.pipeline
    _server_spans(provider, 3)
    assert exporter.force_flush()
    assert sorted(r.path for r in both.records) == ["/0", "/1", "/2"]  # once each, not twice
    assert exporter.stats()["spans_received"] == 3
    provider.shutdown()


def test_shutdown_stops_everything_and_a_later_configure_starts_afresh(tmp_path: Path) -> None:
    provider = TracerProvider()
    first = spanlytics.configure(tracer_provider=provider, local_path=str(tmp_path / "a.db"))
    assert first is not None and first.exporter is not None
    assert len(spanlytics.stats()["exporters"]) == 1
    spanlytics.shutdown(timeout_s=5.0)
    assert first.exporter.export([]) is SpanExportResult.FAILURE  # stopped
    assert spanlytics.stats() == {"exporters": [], "destinations": {}}
    second = spanlytics.configure(tracer_provider=provider, local_path=str(tmp_path / "b.db"))
    assert second is not None and second is not first
    _server_spans(provider, 2)
    assert second.force_flush()  # (the provider keeps the first, stopped: its flush says False)
    (stats,) = spanlytics.stats()["exporters"]
    assert stats["records_exported"] == 2
    provider.shutdown()


def test_testing_reset_forgets_process_state(tmp_path: Path, caplog: Any) -> None:
    import spanlytics.testing
    from spanlytics.capture.store import STORE, Capture

    provider = TracerProvider()
    processor = spanlytics.configure(tracer_provider=provider, local_path=str(tmp_path / "s.db"))
    assert processor is not None
    STORE.register(1, Capture("GET", "/", "", "http", (), bodies=False, limit=0))
    exporter = spanlytics.SpanlyticsExporter(destinations=[ListDestination()], max_queue_size=1)
    exporter.export([])
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _server_spans(provider, 2)  # the second fills the queue: one warning
    _server_spans(provider, 2)  # throttled: no second warning
    assert caplog.text.count("queue full") == 1
    spanlytics.testing.reset()
    assert len(STORE) == 0 and spanlytics.stats() == {"exporters": [], "destinations": {}}
    assert processor.force_flush() is False  # stopped
    assert spanlytics.configure(tracer_provider=provider, local_path=str(tmp_path / "t.db")) is not processor
    again = spanlytics.SpanlyticsExporter(destinations=[ListDestination()], max_queue_size=1)
    again.export([])
    provider.add_span_processor(SimpleSpanProcessor(again))
    _server_spans(provider, 2)
    assert caplog.text.count("queue full") == 2  # throttles start afresh
    provider.shutdown()


def test_destinations_given_as_names_are_the_setting_not_objects(tmp_path: Path) -> None:
    from spanlytics.destinations.local import LocalStore

    for names in ("local", ("local",), ["local"]):
        exporter = spanlytics.SpanlyticsExporter(destinations=names, local_path=str(tmp_path / "a.db"))
        try:
            assert exporter.settings.destinations == ("local",)
            assert [type(d) for d in exporter.destinations] == [LocalStore]
        finally:
            exporter.shutdown()
    with pytest.raises(TypeError, match="not both"):
        spanlytics.SpanlyticsExporter(destinations=[ListDestination(), "local"])  # type: ignore[list-item]
