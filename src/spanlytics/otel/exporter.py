"""SpanlyticsExporter: finished server span -> RequestRecord -> mask -> destinations.

>>> exporter = SpanlyticsExporter(local_path="/var/lib/app/spanlytics.db")  # doctest: +SKIP

``export()`` (and :meth:`submit`) only append to a bounded queue, so it is cheap wherever it
is called from: the SDK's BatchSpanProcessor in the zero-code set-up, or
:class:`~spanlytics.otel.processor.SpanlyticsProcessor` on the request path. One background
thread per process builds records, masks them and writes them to the destinations in
batches. When the queue is full the oldest span is dropped and counted, never blocking.

Constructed without arguments (as ``OTEL_TRACES_EXPORTER=spanlytics`` does), every setting
comes from the ``SPANLYTICS_*`` environment variables.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from spanlytics._process import reset_in_child
from spanlytics._throttle import ThrottledLogger
from spanlytics.capture.state import STORE, Capture, CaptureStore
from spanlytics.config import Settings
from spanlytics.consumer import Consumer
from spanlytics.destinations import AnnotatesRecords, Destination
from spanlytics.destinations.registry import build_destinations
from spanlytics.masking import Masker
from spanlytics.record import RequestRecord, from_span, replace_record

_logger = logging.getLogger("spanlytics.exporter")
_log = ThrottledLogger(_logger)

MAX_PARKED = 1024
"""Spans waiting for a still-streaming response; beyond this the oldest is recorded as is."""

LIVE_EXPORTERS: weakref.WeakSet[SpanlyticsExporter] = weakref.WeakSet()
"""Every exporter in this process, for ``spanlytics.flush()`` and the zero-code hook."""


WAKE_AT = 32
"""Queued spans that wake the worker before its flush interval: small, frequent batches
spread its work evenly between requests instead of in bursts that queue requests up."""

YIELD_AFTER_S = 0.002
"""The worker offers the GIL to the app's threads after this much work: an app thread
coming back from I/O waits at most this long for it, not the interpreter's switch interval
(5 ms)."""

RECOVERY_PAUSE_S = 1.0
"""After an unexpected error the worker waits this long, so that a repeating one cannot spin."""

CATCH_UP_AT = 256
"""Queued spans beyond which the worker stops offering the GIL until it has caught up: a
worker that always yields to a busy app gets one slice per switch interval and falls ever
further behind, holding every queued request in memory."""


class SpanlyticsExporter(SpanExporter):
    """Maps, masks and stores HTTP server spans in a background thread."""

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        destinations: Sequence[Destination] | None = None,
        store: CaptureStore = STORE,
        **options: Any,
    ) -> None:
        self.settings = settings or Settings.resolve(**options)
        self._stopped = False
        try:
            self._masker = Masker(self.settings.masking_rules())
        except ValueError as exc:
            # Fail closed: without the user's masking rules nothing may be recorded.
            _logger.error("spanlytics is disabled: %s", exc)
            self._stopped = True
        self.destinations: list[Destination] = (
            list(destinations) if destinations is not None else build_destinations(self.settings)
        )
        self._store = store
        self._wake_at = min(WAKE_AT, self.settings.batch_size)
        self._annotators = [d.before_mask for d in self.destinations if isinstance(d, AnnotatesRecords)]
        self._consumers = self.settings.consumer_sources()
        self._exclusions = self.settings.exclusions()
        self.fed_by_processor = False
        self._counters = {
            "spans_received": 0,
            "records_exported": 0,
            "dropped_queue_full": 0,
            "dropped_after_shutdown": 0,
            "failed": 0,
            "partial_responses": 0,
            "excluded": 0,
        }
        self._start_lock = threading.Lock()
        self._reset_runtime()
        ref = weakref.ref(self)

        def _at_exit() -> None:
            exporter = ref()
            if exporter is not None:
                exporter.shutdown()

        atexit.register(_at_exit)
        reset_in_child(self, SpanlyticsExporter._reset_runtime)
        LIVE_EXPORTERS.add(self)

    def _reset_runtime(self) -> None:
        """Fresh queue, locks and (lazily) thread: at start and in a forked child."""
        self._pid = os.getpid()
        self._queue: deque[tuple[ReadableSpan, Capture | None]] = deque()
        self._wake = threading.Event()
        self._drain_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._parked: dict[int, tuple[ReadableSpan, Capture, float]] = {}
        self._pending: list[RequestRecord] = []  # built and masked, not handed on yet
        self._pending_since = 0.0
        self._thread: threading.Thread | None = None

    # -- request path / SDK thread: enqueue only ---------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Take spans from an SDK span processor (``OTEL_TRACES_EXPORTER=spanlytics``).

        Ignored once a :class:`~spanlytics.otel.processor.SpanlyticsProcessor` feeds this
        exporter directly (the zero-code hook arranges that): the processor sees every
        recorded server span, sampled or not, so taking the SDK's copy too would duplicate.
        """
        if self._stopped:  # the SDK's convention: an exporter that was shut down fails
            self._counters["dropped_after_shutdown"] += sum(s.kind is SpanKind.SERVER for s in spans)
            return SpanExportResult.FAILURE
        if self.fed_by_processor:
            return SpanExportResult.SUCCESS
        for span in spans:
            if span.kind is SpanKind.SERVER:
                self.submit(span)
        return SpanExportResult.SUCCESS

    def submit(self, span: ReadableSpan, capture: Capture | None = None) -> None:
        """Queue a finished server span (``capture`` only when resuming a parked span)."""
        if self._stopped:
            self._counters["dropped_after_shutdown"] += 1
            return
        if self._pid != os.getpid():
            self._reset_runtime()
        queue = self._queue
        if len(queue) >= self.settings.max_queue_size:
            queue.popleft()
            self._counters["dropped_queue_full"] += 1
            _log.warning("queue.full", "spanlytics queue full; dropping the oldest request")
        queue.append((span, capture))
        if capture is None:
            self._counters["spans_received"] += 1
        if self._thread is None:
            self._start_worker()
        if len(queue) >= self._wake_at:
            self._wake.set()

    def _start_worker(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="spanlytics-exporter", daemon=True)
            thread.start()
            self._thread = thread

    # -- background thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped:
            try:
                self._wake.wait(self.settings.flush_interval_s)
                self._wake.clear()
                if self._stopped:
                    break
                self._drain(final=False)
            except Exception as exc:  # the thread must outlive any one batch
                _log.failure("worker", "spanlytics worker error; its batch is dropped and counted", exc)
                self._wake.wait(RECOVERY_PAUSE_S)

    def _drain(self, final: bool, flush: bool = False) -> None:
        """Build, mask and hand on everything queued.

        Records are built in small slices (see :data:`WAKE_AT`) but handed to the
        destinations in batches of up to ``batch_size``: a batch waits at most the flush
        interval, and ``flush``/``final`` hand on whatever is built. Writing SQLite's pages
        once per few hundred records instead of once per slice halves the worker's cost.
        """
        with self._drain_lock:
            clock = time.monotonic
            offered = clock()
            pending = self._pending
            while True:
                batch = self._pop_batch()
                for span, cap in batch:
                    try:
                        record = self._process(span, cap, final)
                    except Exception as exc:  # one bad span costs itself, not the batch
                        self._counters["failed"] += 1
                        _log.failure("record.process", "could not process a span; request skipped", exc)
                        continue
                    if record is not None:
                        if not pending:
                            self._pending_since = clock()
                        pending.append(record)
                    if not final and clock() - offered >= YIELD_AFTER_S:
                        if len(self._queue) < CATCH_UP_AT:
                            time.sleep(0)  # let the app's threads run: short GIL holds, low p99
                        offered = clock()
                pending.extend(self._expire_parked(final))
                if pending and (
                    final
                    or flush
                    or len(pending) >= self.settings.batch_size
                    or clock() - self._pending_since >= self.settings.flush_interval_s
                ):
                    self._pending = []
                    self._deliver(pending)
                    pending = self._pending
                if not batch:
                    return

    def _pop_batch(self) -> list[tuple[ReadableSpan, Capture | None]]:
        queue, batch = self._queue, []
        for _ in range(self.settings.batch_size):
            try:
                batch.append(queue.popleft())
            except IndexError:
                break
        return batch

    def _process(self, span: ReadableSpan, resumed: Capture | None, final: bool) -> RequestRecord | None:
        ctx = span.context
        span_id = ctx.span_id if ctx is not None else 0
        if resumed is not None:
            if self._parked.pop(span_id, None) is None:
                return None  # recorded already, when its wait expired
            return self._build(span, resumed)
        capture = self._store.take(span_id)
        if capture is not None and not final:
            # WSGI servers may end the span before the body is sent: wait for the response.
            def resume(span: ReadableSpan = span, capture: Capture = capture) -> None:
                self.submit(span, capture)

            if self._store.park(capture, resume):
                deadline = time.monotonic() + self.settings.max_response_wait_s
                self._parked[span_id] = (span, capture, deadline)
                return None
        return self._build(span, capture)

    def _expire_parked(self, final: bool) -> list[RequestRecord]:
        if not self._parked:
            return []
        if final:
            expired = list(self._parked)
        else:
            now = time.monotonic()
            expired = [sid for sid, (_, _, deadline) in self._parked.items() if deadline <= now]
            over = len(self._parked) - len(expired) - MAX_PARKED
            if over > 0:  # too many long-running streams: record the oldest as they are
                due = set(expired)
                expired += [sid for sid in self._parked if sid not in due][:over]
        records = []
        for sid in expired:
            span, capture, _ = self._parked.pop(sid)
            self._counters["partial_responses"] += 1
            record = self._build(span, capture)
            if record is not None:
                records.append(record)
        return records

    def _resolve_consumer(self, capture: Capture | None) -> Consumer | None:
        if capture is None:
            return None
        if capture.consumer is not None:
            return capture.consumer
        return self._consumers.resolve(capture.header, capture.baggage_consumer)

    def _build(self, span: ReadableSpan, capture: Capture | None) -> RequestRecord | None:
        try:
            record = from_span(span, capture, consumer=self._resolve_consumer(capture))
            if record is None:
                return None
            if self._exclusions.excludes(record.path, record.user_agent):
                self._counters["excluded"] += 1
                return None
            if self._annotators:
                notes = tuple(note for annotate in self._annotators for note in annotate(record))
                if notes:
                    record = replace_record(record, annotations=notes)
            if not self.settings.capture_headers:
                record = replace_record(record, request_headers=(), response_headers=())
            return self._masker.mask_record(record)
        except Exception as exc:
            self._counters["failed"] += 1
            _log.failure("record.build", "could not build a request record; request skipped", exc)
            return None

    def _deliver(self, records: list[RequestRecord]) -> None:
        for destination in self.destinations:
            try:
                destination.export(records)
            except Exception as exc:
                self._counters["failed"] += len(records)
                _log.failure(f"deliver.{destination.name}", "destination failed to take a batch", exc)
        self._counters["records_exported"] += len(records)

    # -- lifecycle -------------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Process everything queued now and flush the destinations.

        Spans whose response is still streaming stay parked until it ends.
        """
        if self._stopped:
            return False
        self._drain(final=False, flush=True)
        timeout_s = timeout_millis / 1000
        return all(d.force_flush(timeout_s) for d in self.destinations)

    def shutdown(self, timeout_millis: int = 30000) -> None:
        """Process everything (parked spans as they are), then close the destinations."""
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_millis / 1000)
        self._drain(final=True)
        for destination in self.destinations:
            try:
                destination.shutdown(timeout_millis / 1000)
            except Exception as exc:
                _log.failure(f"shutdown.{destination.name}", "destination failed to shut down", exc)
        dropped = self._counters["dropped_queue_full"] + self._counters["failed"]
        if dropped:
            _logger.warning("spanlytics dropped %d request(s) in this process: %s", dropped, self.stats())

    def stats(self) -> dict[str, int]:
        """Counters for this exporter (received, exported, dropped by reason, ...)."""
        counters = dict(self._counters)
        counters["queued"] = len(self._queue)
        counters["parked"] = len(self._parked)
        counters["pending"] = len(self._pending)
        counters["captures_evicted"] = self._store.evicted
        counters["captured_bytes_held"] = self._store.bytes
        return counters
