"""The span processor: links captures to HTTP server spans, feeds finished ones to a pipeline.

>>> provider.add_span_processor(SpanlyticsProcessor(SpanlyticsExporter()))  # doctest: +SKIP

``spanlytics.configure()`` does exactly this on the app's existing TracerProvider.

* ``on_start`` (request path, inside the capture middleware's context): remember which
  capture belongs to this server span, and pick up the ``spanlytics.consumer.id`` baggage.
  It sets no attribute, so other exporters see the span exactly as without spanlytics.
* ``on_end``: pass server spans, sampled or not, to the exporter's pipeline (an append; the
  mapping, masking and storage happen on the pipeline's background thread). Without an
  exporter it only links captures to spans.

The hand-over: building ``SpanlyticsProcessor(exporter)`` makes this processor the feed of
the exporter's pipeline (:attr:`~spanlytics.pipeline.Feed.PROCESSOR`). When the same exporter
also sits in an SDK span processor (``OTEL_TRACES_EXPORTER=spanlytics``), its ``export()``
then queues nothing: each span reaches the pipeline once, unsampled ones included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

from spanlytics.capture.store import STORE, CaptureStore, current_capture
from spanlytics.consumer import BAGGAGE_CONSUMER_ID
from spanlytics.pipeline import Feed

if TYPE_CHECKING:
    from spanlytics.otel.exporter import SpanlyticsExporter
    from spanlytics.pipeline import Pipeline


class SpanlyticsProcessor(SpanProcessor):
    """Links captures to HTTP server spans and feeds the exporter's pipeline (see the module)."""

    def __init__(self, exporter: SpanlyticsExporter | None = None, store: CaptureStore = STORE) -> None:
        self.exporter = exporter
        self.pipeline: Pipeline | None = None
        self._store = store
        if exporter is not None:
            self.pipeline = exporter.pipeline
            self.pipeline.feed = Feed.PROCESSOR  # the hand-over: see the module

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.kind is not SpanKind.SERVER:
            return
        capture = current_capture()
        if capture is None or capture.span_id is not None:
            return  # not a captured request, or a nested server span of one already linked
        span_id = span.get_span_context().span_id
        capture.span = span
        capture.span_id = span_id
        consumer_id = baggage.get_baggage(BAGGAGE_CONSUMER_ID, parent_context)
        if consumer_id is not None:
            capture.baggage_consumer = str(consumer_id)
        self._store.register(span_id, capture)

    def on_end(self, span: ReadableSpan) -> None:
        # Sampled or not: with SpanlyticsSampler, dropped server spans arrive here recorded
        # but unsampled, and only spanlytics takes them (other processors check `sampled`).
        if self.pipeline is not None and span.kind is SpanKind.SERVER:
            self.pipeline.submit(span)

    def shutdown(self) -> None:
        if self.pipeline is not None:
            self.pipeline.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        if self.pipeline is None:
            return True
        return self.pipeline.flush(timeout_millis / 1000)
