"""SpanlyticsExporter: the SpanExporter face of a :class:`~spanlytics.pipeline.Pipeline`.

``OTEL_TRACES_EXPORTER=spanlytics`` makes the SDK build one with no arguments (every setting
then comes from the ``SPANLYTICS_*`` environment variables) and put it in a
BatchSpanProcessor. In code, every setting is a keyword argument::

    exporter = SpanlyticsExporter(local_path="/var/lib/app/spanlytics.db")
    provider.add_span_processor(SpanlyticsProcessor(exporter))   # what configure() does

The exporter only hands HTTP server spans to its pipeline, which queues them and builds,
masks and stores the records on its own background thread; batching and threading are the
pipeline's. Once a :class:`~spanlytics.otel.processor.SpanlyticsProcessor` is built on the
exporter, that processor feeds the pipeline instead (see :meth:`SpanlyticsExporter.export`).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from spanlytics._process import on_reset
from spanlytics.capture.store import STORE, CaptureStore
from spanlytics.config import Settings
from spanlytics.destinations import Destination
from spanlytics.pipeline import Feed, Pipeline

LIVE_EXPORTERS: weakref.WeakSet[SpanlyticsExporter] = weakref.WeakSet()
"""Every exporter of this process, for the zero-code hook (:func:`waiting_for_a_processor`)."""
on_reset(LIVE_EXPORTERS.clear)


class SpanlyticsExporter(SpanExporter):
    """Hands finished HTTP server spans to a spanlytics pipeline (see the module)."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        destinations: Sequence[Destination] | str | Sequence[str] | None = None,
        store: CaptureStore = STORE,
        **options: Any,
    ) -> None:
        """``destinations``: destination objects to write to instead of the configured ones,
        or, given as names (``"local,readme"``), the ``destinations`` setting itself."""
        built: Sequence[Destination] | None = None
        if isinstance(destinations, str) or (destinations and all(isinstance(d, str) for d in destinations)):
            options["destinations"] = destinations
        elif destinations is not None:
            if any(isinstance(d, str) for d in destinations):
                raise TypeError("destinations: give destination objects or destination names, not both")
            built = destinations  # type: ignore[assignment]
        self.pipeline = Pipeline(settings or Settings.resolve(**options), built, store=store)
        LIVE_EXPORTERS.add(self)

    @property
    def settings(self) -> Settings:
        return self.pipeline.settings

    @property
    def destinations(self) -> list[Destination]:
        return self.pipeline.destinations

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Queue the HTTP server spans among ``spans`` (other kinds are ignored).

        * After :meth:`shutdown`: FAILURE, as the SDK's exporters do; the server spans are
          counted as ``dropped_after_shutdown``.
        * Once ``SpanlyticsProcessor(exporter)`` was built (``configure()`` and the zero-code
          hook do that), the processor feeds the pipeline: every recorded server span,
          sampled or not. The spans an SDK span processor passes here are the sampled part of
          those, so they are not queued again; the answer is SUCCESS.
        """
        pipeline = self.pipeline
        if pipeline.stopped:
            pipeline.count_dropped_after_shutdown(sum(s.kind is SpanKind.SERVER for s in spans))
            return SpanExportResult.FAILURE
        if pipeline.feed is Feed.EXPORTER:
            for span in spans:
                if span.kind is SpanKind.SERVER:
                    pipeline.submit(span)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Process everything queued now and flush the destinations (False after shutdown).

        Spans whose response is still streaming stay parked until it ends.
        """
        return self.pipeline.flush(timeout_millis / 1000)

    def shutdown(self, timeout_millis: int = 30000) -> None:
        """Process everything (parked spans as they are), then close the destinations."""
        self.pipeline.shutdown(timeout_millis / 1000)

    def stats(self) -> dict[str, int]:
        """The pipeline's counters: received, exported, dropped by reason, queued, parked, ..."""
        return self.pipeline.stats()


def waiting_for_a_processor() -> SpanlyticsExporter | None:
    """An exporter still fed by its own ``export()``: the one the SDK built for
    ``OTEL_TRACES_EXPORTER=spanlytics``, which the zero-code hook hands to a processor."""
    waiting = (e for e in list(LIVE_EXPORTERS) if e.pipeline.feed is Feed.EXPORTER and not e.pipeline.stopped)
    return next(waiting, None)
