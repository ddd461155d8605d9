"""The pipeline: finished server spans -> records -> pre-mask hooks -> mask -> destinations.

One :class:`Pipeline` per set-up. Its :meth:`~Pipeline.submit` is all the request path
pays: an append to a bounded queue (full: the oldest span is dropped and counted, never a
wait). A :class:`~spanlytics.worker.BackgroundWorker` thread does the rest, in slices::

    pipeline = Pipeline(Settings.resolve(local_path="/var/lib/api/spanlytics.db"))
    pipeline.submit(span)           # a finished HTTP server span (SpanlyticsProcessor.on_end)
    pipeline.flush(timeout_s=5.0)   # build, mask and hand on everything queued now
    pipeline.stats()                # spans received, records exported, dropped by reason, ...
    pipeline.shutdown(timeout_s=5.0)

For each span the worker takes its capture from the side channel (parking the span while a
WSGI response is still streaming), builds a :class:`~spanlytics.record.RequestRecord`, drops
excluded requests, lets destinations annotate the unmasked record (``before_mask``), strips
headers unless they are captured, masks it and hands batches to every destination.

Spans come from exactly one :class:`Feed`, so that none is counted twice: the exporter until a
span processor is built on it, the processor from then on (see ``otel/``).
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan

from spanlytics._process import on_reset, reset_in_child
from spanlytics._throttle import ThrottledLogger
from spanlytics.capture.store import STORE, Capture, CaptureStore
from spanlytics.config import Settings
from spanlytics.consumer.resolve import ConsumerResolver
from spanlytics.consumer.sources import NO_SENSITIVE_HEADERS
from spanlytics.destinations import AnnotatesRecords, Destination
from spanlytics.destinations.registry import build_destinations
from spanlytics.exclusions import Exclusions
from spanlytics.masking import Masker
from spanlytics.masking.configured import masking_rules
from spanlytics.record import RequestRecord, from_span, replace_record
from spanlytics.span_attributes import read_attributes
from spanlytics.worker import BackgroundWorker

__all__ = [
    "CATCH_UP_AT",
    "MAX_PARKED",
    "PIPELINES",
    "WAKE_AT",
    "YIELD_AFTER_S",
    "Feed",
    "Pipeline",
    "masker_and_consumers",
]

_logger = logging.getLogger("spanlytics.exporter")
_log = ThrottledLogger(_logger)

MAX_PARKED = 1024
"""Spans waiting for a still-streaming response; beyond this the oldest is recorded as is."""

WAKE_AT = 32
"""Queued spans that wake the worker before its flush interval: small, frequent batches
spread its work evenly between requests instead of in bursts that queue requests up."""

YIELD_AFTER_S = 0.002
"""The worker offers the GIL to the app's threads after this much work: an app thread
coming back from I/O waits at most this long for it, not the interpreter's switch interval
(5 ms)."""

CATCH_UP_AT = 256
"""Queued spans beyond which the worker stops offering the GIL until it has caught up: a
worker that always yields to a busy app gets one slice per switch interval and falls ever
further behind, holding every queued request in memory."""

PIPELINES: weakref.WeakSet[Pipeline] = weakref.WeakSet()
"""Every pipeline of this process, for ``spanlytics.flush()``, ``stats()`` and ``shutdown()``;
:func:`~spanlytics._process.reset_process` forgets them."""
on_reset(PIPELINES.clear)

RecordBuilder = Callable[[ReadableSpan, "Capture | None"], "RequestRecord | None"]


def masker_and_consumers(settings: Settings) -> tuple[Masker, ConsumerResolver]:
    """The masker and the consumer resolver ``settings`` ask for. Raises ``ValueError`` for
    an invalid masking pattern (the pipeline then records nothing: masking fails closed).

    Each needs the other, so both are built here, above both stages: masking hides the
    headers a hashed identifier was read from (``consumer_hash``), and without
    ``consumer_hash`` an identifier read from a header that masking hides (``X-Api-Key``)
    is hashed all the same.
    """
    if settings.consumer_hash:  # every identifier is hashed; its raw header is masked
        consumers = ConsumerResolver.from_settings(settings, sensitive_header=NO_SENSITIVE_HEADERS)
        masker = Masker(masking_rules(settings, consumers.sources.identifying_headers()))
        return masker, consumers
    masker = Masker(masking_rules(settings))
    return masker, ConsumerResolver.from_settings(settings, sensitive_header=masker.is_sensitive_header)


class Feed(enum.Enum):
    """Which entry point hands a pipeline its spans. Exactly one does, so none counts twice."""

    EXPORTER = "exporter"
    """``SpanlyticsExporter.export()``: what an SDK span processor passes on (sampled spans)."""
    PROCESSOR = "processor"
    """``SpanlyticsProcessor.on_end``: every recorded server span, sampled or not."""


class Pipeline:
    """Queue, worker thread, record building, masking and fan-out (see the module)."""

    def __init__(
        self,
        settings: Settings,
        destinations: Sequence[Destination] | None = None,
        *,
        store: CaptureStore = STORE,
    ) -> None:
        self.settings = settings
        self.feed = Feed.EXPORTER
        """Who submits spans; ``SpanlyticsProcessor(exporter)`` sets PROCESSOR (the hand-over)."""
        self._stopped = False
        self.destinations: list[Destination] = (
            list(destinations) if destinations is not None else build_destinations(settings)
        )
        self._store = store
        self._wake_at = min(WAKE_AT, settings.batch_size)
        self._counters = {
            "spans_received": 0,
            "records_exported": 0,
            "dropped_queue_full": 0,
            "dropped_after_shutdown": 0,
            "failed": 0,
            "partial_responses": 0,
            "excluded": 0,
        }
        self._build: RecordBuilder
        try:
            self._build = self._record_builder()
        except ValueError as exc:
            # Fail closed: without the user's masking rules nothing may be recorded.
            _logger.error("spanlytics is disabled: %s", exc)
            self._build = lambda span, capture: None
            self._stopped = True
        self._worker = BackgroundWorker(
            "spanlytics-exporter",
            self._tick,
            interval_s=settings.flush_interval_s,
            on_error=self._worker_failed,
        )
        self._reset_runtime()
        reset_in_child(self, Pipeline._after_fork)
        ref = weakref.ref(self)

        def _at_exit() -> None:
            pipeline = ref()
            if pipeline is not None:
                pipeline.shutdown()

        atexit.register(_at_exit)
        self._exit_hook = _at_exit  # registered again at each process's first span: see submit()
        PIPELINES.add(self)

    def _reset_runtime(self) -> None:
        """Fresh queue, parked spans, pending records and lock: at start and in a forked child."""
        self._pid = os.getpid()
        self._started = False  # whether this process asked the worker to start
        self._drain_lock = threading.Lock()
        self._queue: deque[tuple[ReadableSpan, Capture | None]] = deque()
        self._parked: dict[int, tuple[ReadableSpan, Capture, float]] = {}
        self._pending: list[RequestRecord] = []  # built and masked, not handed on yet
        self._pending_since = 0.0

    def _record_builder(self) -> RecordBuilder:
        """The record stage, from the settings: span + capture -> masked record, or None
        (not an HTTP request, excluded, or failed: counted). Raises ValueError for a bad
        masking rule."""
        masker, consumers = masker_and_consumers(self.settings)
        exclusions = Exclusions.from_settings(self.settings)
        annotators = [d.before_mask for d in self.destinations if isinstance(d, AnnotatesRecords)]
        strip_headers = not self.settings.capture_headers
        counters = self._counters

        def build(span: ReadableSpan, capture: Capture | None) -> RequestRecord | None:
            try:
                captured = capture.snapshot() if capture is not None else None
                consumer = consumers.resolve(captured, read_attributes(span))
                record = from_span(span, captured, consumer=consumer)
                if record is None:
                    return None
                admitted = capture is not None and capture.admitted_by == exclusions  # asked once
                if not admitted and exclusions.excludes(record.path, record.user_agent):
                    counters["excluded"] += 1
                    return None
                if annotators:
                    notes = tuple(note for annotate in annotators for note in annotate(record))
                    if notes:
                        record = replace_record(record, annotations=notes)
                if strip_headers:
                    record = replace_record(record, request_headers=(), response_headers=())
                return masker.mask_record(record)
            except Exception as exc:
                counters["failed"] += 1
                _log.failure("record.build", "could not build a request record; request skipped", exc)
                return None

        return build

    # -- request path: enqueue only ----------------------------------------------------------

    def submit(self, span: ReadableSpan, capture: Capture | None = None) -> None:
        """Queue a finished server span (``capture`` only when resuming a parked span)."""
        if self._stopped:
            self._counters["dropped_after_shutdown"] += 1
            return
        if self._pid != os.getpid():  # a fork that ran no at-fork hooks (uWSGI can)
            self._after_fork()
        queue = self._queue
        if len(queue) >= self.settings.max_queue_size:
            queue.popleft()
            self._counters["dropped_queue_full"] += 1
            _log.warning("queue.full", "spanlytics queue full; dropping the oldest request")
        queue.append((span, capture))
        if capture is None:
            self._counters["spans_received"] += 1
        if not self._started:  # a plain attribute, not the worker's property: this runs per request
            self._worker.start()
            self._started = True
            atexit.register(self._exit_hook)  # exit hooks run last first: before the OTel providers'
        if len(queue) >= self._wake_at:
            self._worker.wake()

    def _after_fork(self) -> None:
        self._reset_runtime()
        self._worker.reset_after_fork()

    @property
    def stopped(self) -> bool:
        """Shut down: spans submitted now are counted as ``dropped_after_shutdown``."""
        return self._stopped

    def count_dropped_after_shutdown(self, spans: int) -> None:
        self._counters["dropped_after_shutdown"] += spans

    # -- the worker thread -----------------------------------------------------------------

    def _tick(self) -> None:
        self._drain(final=False)

    def _worker_failed(self, exc: Exception) -> None:
        _log.failure("worker", "spanlytics worker error; its batch is dropped and counted", exc)

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

    def _deliver(self, records: list[RequestRecord]) -> None:
        for destination in self.destinations:
            try:
                destination.export(records)
            except Exception as exc:
                self._counters["failed"] += len(records)
                _log.failure(f"deliver.{destination.name}", "destination failed to take a batch", exc)
        self._counters["records_exported"] += len(records)

    # -- lifecycle -------------------------------------------------------------------------

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Process everything queued now (on the calling thread) and flush the destinations.

        Spans whose response is still streaming stay parked until it ends.
        """
        if self._stopped:
            return False
        self._drain(final=False, flush=True)
        return all(d.force_flush(timeout_s) for d in self.destinations)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Process everything (parked spans as they are), then close the destinations.

        Idempotent; spans submitted afterwards are counted as ``dropped_after_shutdown``.
        """
        if self._stopped:
            return
        self._stopped = True
        self._worker.stop(timeout_s)
        self._drain(final=True)
        for destination in self.destinations:
            try:
                destination.shutdown(timeout_s)
            except Exception as exc:
                _log.failure(f"shutdown.{destination.name}", "destination failed to shut down", exc)
        dropped = self._counters["dropped_queue_full"] + self._counters["failed"]
        if dropped:
            _logger.warning("spanlytics dropped %d request(s) in this process: %s", dropped, self.stats())

    def stats(self) -> dict[str, int]:
        """Counters (received, exported, dropped by reason, ...) and what is held now."""
        counters = dict(self._counters)
        counters["queued"] = len(self._queue)
        counters["parked"] = len(self._parked)
        counters["pending"] = len(self._pending)
        counters["captures_evicted"] = self._store.evicted
        counters["captured_bytes_held"] = self._store.bytes
        return counters
