"""Consumer metrics: duration and body size histograms by method, route, status and consumer.

Instrument names are spanlytics' own, not the semantic conventions' ``http.server.*``: the
HTTP instrumentors of the same service already export ``http.server.request.duration``, and
one name with two attribute sets (and two counts of the same requests) from one service
would be summed or rejected by backends. Attribute names are the conventions' where one
exists::

    spanlytics.request.duration     s    HTTP semconv buckets (5 ms .. 10 s)
    spanlytics.request.body.size    By   powers of 4 from 64 B to 16 MiB
    spanlytics.response.body.size   By
    attributes: http.request.method, http.route, http.response.status_code,
                spanlytics.consumer.id, spanlytics.consumer.group (each when known)

Consumer cardinality is bounded by :class:`ConsumerSlots`: every distinct consumer id is a
new series per route and status in every backend, and an API with a million consumers must
not make a million of them. The first ``max_consumers`` distinct consumers this process
sees keep their id for its life, the later ones are reported as ``other`` (groups are
bounded the same way). A slot is never taken back, so a series never flips between a
consumer's id and ``other``: a rate over ``spanlytics_consumer_id="acme"`` stays whole. The
price: a consumer that first calls after the slots are full stays ``other`` until the
process restarts, and each worker process fills its slots in its own order.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.metrics import Histogram, Meter

from spanlytics.consumer.value import ATTR_CONSUMER_GROUP, ATTR_CONSUMER_ID
from spanlytics.record import RequestRecord

__all__ = [
    "DURATION",
    "DURATION_BUCKETS_S",
    "OTHER",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "SIZE_BUCKETS_BYTES",
    "ConsumerInstruments",
    "ConsumerSlots",
]

DURATION = "spanlytics.request.duration"
REQUEST_SIZE = "spanlytics.request.body.size"
RESPONSE_SIZE = "spanlytics.response.body.size"
OTHER = "other"

DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""The HTTP semantic conventions' advice for ``http.server.request.duration``."""
SIZE_BUCKETS_BYTES = (
    0.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
)
"""Powers of 4: the SDK's default boundaries (0 to 10,000) suit milliseconds, not bytes."""


class ConsumerSlots:
    """At most ``limit`` distinct values keep their own name; later ones are ``other``.

    >>> slots = ConsumerSlots(1)
    >>> slots.label("acme"), slots.label("globex"), slots.label("acme")
    ('acme', 'other', 'acme')
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: set[str] = set()
        self._lock = threading.Lock()  # the worker thread, or a flush on another thread

    def label(self, value: str) -> str:
        kept = self._kept
        if value in kept:
            return value
        with self._lock:
            if len(kept) < self.limit:
                kept.add(value)
                return value
        return OTHER

    def reset(self) -> None:
        """Forget the kept values (a forked worker fills its own slots)."""
        self._kept = set()
        self._lock = threading.Lock()


class ConsumerInstruments:
    """The three histograms on one meter, and how a record is recorded on them."""

    def __init__(self, meter: Meter, max_consumers: int) -> None:
        self.duration: Histogram = meter.create_histogram(
            DURATION,
            unit="s",
            description="Duration of HTTP server requests, by API consumer.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self.request_size: Histogram = meter.create_histogram(
            REQUEST_SIZE,
            unit="By",
            description="Size of HTTP request bodies, by API consumer.",
            explicit_bucket_boundaries_advisory=SIZE_BUCKETS_BYTES,
        )
        self.response_size: Histogram = meter.create_histogram(
            RESPONSE_SIZE,
            unit="By",
            description="Size of HTTP response bodies, by API consumer.",
            explicit_bucket_boundaries_advisory=SIZE_BUCKETS_BYTES,
        )
        self.consumers = ConsumerSlots(max_consumers)
        self.groups = ConsumerSlots(max_consumers)

    def attributes(self, record: RequestRecord) -> dict[str, Any]:
        attrs: dict[str, Any] = {"http.request.method": record.method}
        if record.route is not None:
            attrs["http.route"] = record.route
        if record.status is not None:
            attrs["http.response.status_code"] = record.status
        consumer = record.consumer
        if consumer is not None:
            attrs[ATTR_CONSUMER_ID] = self.consumers.label(consumer.identifier)
            if consumer.group is not None:
                attrs[ATTR_CONSUMER_GROUP] = self.groups.label(consumer.group)
        return attrs

    def record(self, record: RequestRecord) -> None:
        attrs = self.attributes(record)
        self.duration.record(record.duration_ms / 1000.0, attrs)
        if record.request_size is not None:
            self.request_size.record(record.request_size, attrs)
        if record.response_size is not None:
            self.response_size.record(record.response_size, attrs)
