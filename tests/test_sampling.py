"""sampling.py: head sampling must not change request counts, nor what other exporters get."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

import spanlytics
from spanlytics.destinations.local import iter_records
from spanlytics.otel.sampling import SpanlyticsSampler, install_sampler

TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C
REQUESTS = 400
RATIO = 0.1


class DropWithNotes(Sampler):
    """A user's sampler that drops but still returns attributes and a trace state."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        return SamplingResult(Decision.DROP, {"sampler.note": "dropped"}, TraceState([("vendor", "v1")]))

    def get_description(self) -> str:
        return "DropWithNotes"


def _decide(sampler: Sampler, kind: SpanKind | None, attributes: Attributes = None) -> SamplingResult:
    return sampler.should_sample(None, TRACE_ID, "GET /orders", kind, attributes)


@pytest.mark.parametrize("wrapped", [TraceIdRatioBased(0.0), ALWAYS_OFF, ParentBased(ALWAYS_OFF)])
def test_dropped_server_spans_are_recorded_but_not_sampled(wrapped: Sampler) -> None:
    result = _decide(SpanlyticsSampler(wrapped), SpanKind.SERVER)
    assert result.decision is Decision.RECORD_ONLY
    assert result.decision.is_recording() and not result.decision.is_sampled()


@pytest.mark.parametrize("kind", [SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER])
@pytest.mark.parametrize("wrapped", [TraceIdRatioBased(0.0), ALWAYS_OFF])
def test_other_dropped_spans_stay_dropped(wrapped: Sampler, kind: SpanKind) -> None:
    assert _decide(SpanlyticsSampler(wrapped), kind).decision is Decision.DROP
    assert _decide(SpanlyticsSampler(wrapped), None).decision is Decision.DROP


@pytest.mark.parametrize("kind", [SpanKind.SERVER, SpanKind.INTERNAL, SpanKind.CLIENT])
def test_sampled_decisions_pass_through_unchanged(kind: SpanKind) -> None:
    attributes = {"http.method": "GET"}
    for wrapped in (ALWAYS_ON, TraceIdRatioBased(1.0)):
        inner = _decide(wrapped, kind, attributes)
        outer = _decide(SpanlyticsSampler(wrapped), kind, attributes)
        assert outer.decision is inner.decision is Decision.RECORD_AND_SAMPLE
        assert dict(outer.attributes) == dict(inner.attributes) == attributes


def test_wrapped_sampler_attributes_and_trace_state_are_kept() -> None:
    result = _decide(SpanlyticsSampler(DropWithNotes()), SpanKind.SERVER)
    assert result.decision is Decision.RECORD_ONLY
    assert result.attributes.get("sampler.note") == "dropped"
    assert result.trace_state == TraceState([("vendor", "v1")])


def test_parent_trace_state_is_kept_for_an_unsampled_remote_parent() -> None:
    state = TraceState([("vendor", "abc")])
    parent = SpanContext(TRACE_ID, 0x1234, is_remote=True, trace_flags=TraceFlags(0), trace_state=state)
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    sampler = SpanlyticsSampler(ParentBased(ALWAYS_ON))  # the SDK default, wrapped
    result = sampler.should_sample(context, TRACE_ID, "GET /", SpanKind.SERVER)
    assert result.decision is Decision.RECORD_ONLY
    assert result.trace_state == state
    child = sampler.should_sample(context, TRACE_ID, "work", SpanKind.INTERNAL)
    assert child.decision is Decision.DROP


def test_recorded_server_span_keeps_its_start_attributes() -> None:
    # The SDK's samplers return no attributes with DROP, and the span is created with the
    # result's attributes: a RECORD_ONLY span must not lose http.method, http.target, ...
    attributes = {"http.method": "GET", "http.target": "/orders?page=2"}
    result = _decide(SpanlyticsSampler(TraceIdRatioBased(0.0)), SpanKind.SERVER, attributes)
    assert result.decision is Decision.RECORD_ONLY
    assert dict(result.attributes) == attributes


def test_description_names_the_wrapped_sampler() -> None:
    wrapped = ParentBased(TraceIdRatioBased(0.25))
    description = SpanlyticsSampler(wrapped).get_description()
    assert description == f"SpanlyticsSampler{{{wrapped.get_description()}}}"
    assert "TraceIdRatioBased{0.25}" in description


def test_install_sampler_wraps_a_sampler_that_can_drop() -> None:
    original = ParentBased(TraceIdRatioBased(RATIO))
    provider = TracerProvider(sampler=original)
    assert install_sampler(provider) is True
    assert isinstance(provider.sampler, SpanlyticsSampler)
    assert provider.sampler.wrapped is original
    assert install_sampler(provider) is False  # idempotent: never wrapped twice
    assert provider.sampler.wrapped is original
    # Tracers created from now on use the wrapper.
    tracer = provider.get_tracer("after-install")
    with tracer.start_as_current_span("GET /", kind=SpanKind.SERVER) as span:
        assert span.is_recording()


def test_install_sampler_leaves_always_on_alone() -> None:
    provider = TracerProvider(sampler=ALWAYS_ON)
    assert install_sampler(provider) is False
    assert provider.sampler is ALWAYS_ON


class KindCounter(SpanProcessor):
    """Counts every span the SDK records, by kind and sampled flag (a user's processor)."""

    def __init__(self) -> None:
        self.ended: Counter[tuple[SpanKind, bool]] = Counter()

    def on_end(self, span: ReadableSpan) -> None:
        assert span.context is not None
        self.ended[(span.kind, span.context.trace_flags.sampled)] += 1


def _sampled_run(tmp_path: Path, **settings: object) -> tuple[list[ReadableSpan], int, KindCounter]:
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(RATIO)))
    user = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(user))
    counter = KindCounter()
    provider.add_span_processor(counter)
    db = tmp_path / "sampled.db"
    processor = spanlytics.configure(tracer_provider=provider, local_path=str(db), **settings)
    assert processor is not None

    app = FastAPI()

    @app.get("/orders/{order_id}")
    def order(order_id: int) -> dict[str, int]:
        with trace.get_tracer("app", tracer_provider=provider).start_as_current_span("load-order"):
            return {"id": order_id}

    # Instrumented after configure(): its tracer is created with the provider's sampler now.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    spanlytics.instrument_app(app)
    client = TestClient(app)
    for i in range(REQUESTS):
        assert client.get(f"/orders/{i}").json() == {"id": i}
    assert processor.force_flush()
    stored = len(list(iter_records(db)))
    provider.shutdown()
    return list(user.get_finished_spans()), stored, counter


def _within_binomial_bounds(count: int) -> bool:
    mean = REQUESTS * RATIO
    sd = math.sqrt(REQUESTS * RATIO * (1 - RATIO))
    return mean - 5 * sd <= count <= mean + 5 * sd


def test_every_request_is_counted_while_the_app_keeps_its_sample_rate(tmp_path: Path) -> None:
    spans, stored, counter = _sampled_run(tmp_path)

    assert stored == REQUESTS
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert _within_binomial_bounds(len(servers)), len(servers)
    assert all(s.context is not None and s.context.trace_flags.sampled for s in spans)
    # Only whole sampled traces reach the app's exporter: no child of an unsampled request.
    sampled_traces = {s.context.trace_id for s in servers if s.context is not None}
    assert {s.context.trace_id for s in spans if s.context is not None} == sampled_traces
    assert sum(1 for s in spans if s.name == "load-order") == len(servers)
    # Unsampled requests cost one recorded server span, and nothing else.
    unsampled = {kind: n for (kind, sampled), n in counter.ended.items() if not sampled}
    assert unsampled == {SpanKind.SERVER: REQUESTS - len(servers)}


def test_fidelity_off_leaves_the_sampler_alone(tmp_path: Path) -> None:
    spans, stored, counter = _sampled_run(tmp_path, sampling_fidelity=False)

    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert _within_binomial_bounds(len(servers)), len(servers)
    assert stored == len(servers) < REQUESTS
    assert all(sampled for (_, sampled) in counter.ended)


def test_unsampled_request_without_capture_is_still_recorded(tmp_path: Path) -> None:
    # A framework spanlytics cannot capture (no middleware): the record comes from the span
    # alone, so the recorded-but-unsampled server span must carry its HTTP attributes.
    provider = TracerProvider(sampler=SpanlyticsSampler(ALWAYS_OFF))
    db = tmp_path / "plain.db"
    processor = spanlytics.configure(tracer_provider=provider, local_path=str(db))
    assert processor is not None
    tracer = provider.get_tracer("framework")
    attributes = {"http.method": "GET", "http.target": "/orders", "http.scheme": "http"}
    with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER, attributes=attributes) as span:
        span.set_attribute("http.status_code", 200)
        assert not span.get_span_context().trace_flags.sampled
    assert processor.force_flush()
    stats = processor.exporter.stats()
    assert stats["spans_received"] == 1
    assert stats["records_exported"] == 1
    records = list(iter_records(db))
    provider.shutdown()
    assert [(r.method, r.path, r.status) for r in records] == [("GET", "/orders", 200)]
