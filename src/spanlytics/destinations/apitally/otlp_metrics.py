"""Apitally 1.x request metrics: delta exponential histograms per (method, route, status,
consumer), and the process gauges, as the ``apitally`` 1.0 SDK computes and encodes them
(``apitally/shared/metrics.py``).

Every masked record counts, sampled or not; OPTIONS and requests that matched no route do
not (as the SDK). The histograms use the SDK's fixed scale 3 (8 buckets per power of two,
about 9% wide), not the OpenTelemetry SDK's 160 buckets from scale 20 downscaled: the
buckets Apitally's ingestion merges are then the same whichever client sent them.

>>> metrics = RequestMetrics()
>>> metrics.add(record)  # doctest: +SKIP
>>> request_bytes = metrics.collect(resource, scope, end_ns)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_DELTA,
    Metric,
)

from spanlytics.destinations.apitally.aggregation import consumer_fields, request_size, status_code
from spanlytics.destinations.apitally.otlp_wire import add_attributes, envelope
from spanlytics.destinations.apitally.process_facts import process_start_time, rss_bytes

if TYPE_CHECKING:
    from spanlytics.record import RequestRecord

__all__ = [
    "HISTOGRAM_SCALE",
    "MAX_COMBINATIONS",
    "ExponentialHistogram",
    "ProcessGauges",
    "RequestMetrics",
    "bucket_index",
]

HISTOGRAM_SCALE = 3
_SCALE_FACTOR = math.ldexp(1 / math.log(2), HISTOGRAM_SCALE)
MAX_COMBINATIONS = 50_000  # the SDK's guard against a request id used as the consumer
COMBINATIONS_PER_REQUEST = 1_000  # one export request's data points, as the SDK slices them
HISTOGRAMS = (
    ("http.server.request.duration", "s"),
    ("http.server.request.body.size", "By"),
    ("http.server.response.body.size", "By"),
)

MetricKey = tuple[str, str, int, "str | None"]  # method, route, status, consumer


def bucket_index(value: float) -> int:
    """The bucket of a positive value at scale 3: ``(base**i, base**(i+1)]``, base 2**(1/8)."""
    mantissa, exponent = math.frexp(value)
    if mantissa == 0.5:  # an exact power of two is the upper bound of the bucket below
        return ((exponent - 1) << HISTOGRAM_SCALE) - 1
    return math.floor(math.log(value) * _SCALE_FACTOR)


@dataclass
class ExponentialHistogram:
    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    zero_count: int = 0
    buckets: dict[int, int] = field(default_factory=dict)

    def record(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if value == 0:
            self.zero_count += 1
        else:
            index = bucket_index(value)
            self.buckets[index] = self.buckets.get(index, 0) + 1


def _attributes(key: MetricKey) -> dict[str, str | int]:
    method, route, status, consumer = key
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "http.route": route,
        "http.response.status_code": status,
    }
    if consumer:
        attributes["apitally.consumer.identifier"] = consumer
    return attributes


class RequestMetrics:
    """The histograms of one export interval. ``add`` and ``collect`` may run on different
    threads; ``collect`` starts the next interval."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._histograms: dict[MetricKey, tuple[ExponentialHistogram, ...]] = {}
        self._start_ns = time.time_ns()
        self.dropped_combinations = 0  # in the interval that ``collect`` ends

    def add(self, record: RequestRecord) -> None:
        if record.method == "OPTIONS" or not record.route:
            return
        consumer, _, _ = consumer_fields(record)
        key = (record.method.upper(), record.route, status_code(record), consumer)
        with self._lock:
            histograms = self._histograms.get(key)
            if histograms is None:
                if len(self._histograms) >= MAX_COMBINATIONS:
                    self.dropped_combinations += 1
                    return
                histograms = self._histograms[key] = tuple(ExponentialHistogram() for _ in HISTOGRAMS)
            histograms[0].record(record.duration_ms / 1000.0)
            size = request_size(record)
            if size is not None:
                histograms[1].record(size)
            if record.response_size is not None and record.response_size >= 0:
                histograms[2].record(record.response_size)

    def collect(self, resource: bytes, scope: bytes, end_ns: int | None = None) -> list[bytes]:
        """Export requests (serialized) for the interval that ends now, at most
        :data:`COMBINATIONS_PER_REQUEST` attribute combinations each; none without data."""
        with self._lock:
            collected, self._histograms = self._histograms, {}
            self.dropped_combinations = 0
            start_ns = self._start_ns
            self._start_ns = end_ns = end_ns or time.time_ns()
        combinations = list(collected.items())
        requests = []
        for first in range(0, len(combinations), COMBINATIONS_PER_REQUEST):
            chunk = combinations[first : first + COMBINATIONS_PER_REQUEST]
            metrics = [
                _histogram_metric(index, chunk, start_ns, end_ns).SerializeToString()
                for index in range(len(HISTOGRAMS))
                if any(histograms[index].count for _, histograms in chunk)
            ]
            requests.append(envelope(resource, scope, metrics))
        return requests


def _histogram_metric(
    index: int, chunk: list[tuple[MetricKey, tuple[ExponentialHistogram, ...]]], start_ns: int, end_ns: int
) -> Metric:
    name, unit = HISTOGRAMS[index]
    metric = Metric(name=name, unit=unit)
    metric.exponential_histogram.aggregation_temporality = AGGREGATION_TEMPORALITY_DELTA
    for key, histograms in chunk:
        histogram = histograms[index]
        if not histogram.count:
            continue
        point = metric.exponential_histogram.data_points.add(
            start_time_unix_nano=start_ns,
            time_unix_nano=end_ns,
            count=histogram.count,
            sum=histogram.sum,
            scale=HISTOGRAM_SCALE,
            zero_count=histogram.zero_count,
            min=histogram.min,
            max=histogram.max,
        )
        add_attributes(point.attributes, _attributes(key))
        if histogram.buckets:
            offset = min(histogram.buckets)
            counts = [0] * (max(histogram.buckets) - offset + 1)
            for bucket, count in histogram.buckets.items():
                counts[bucket - offset] = count
            point.positive.offset = offset
            point.positive.bucket_counts.extend(counts)
    return metric


class ProcessGauges:
    """``process.uptime`` (s), ``process.cpu.utilization`` (CPU time over wall time since the
    last collection, divided by the CPU count, 0-1) and ``process.memory.usage`` (RSS)."""

    def __init__(self) -> None:
        self._started = process_start_time()
        self._last = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float]:
        times = os.times()
        return time.monotonic(), times.user + times.system

    def collect(self, resource: bytes, scope: bytes, end_ns: int | None = None) -> bytes:
        end_ns = end_ns or time.time_ns()
        now = self._sample()
        (wall, cpu), self._last = self._last, now
        utilization = (now[1] - cpu) / (now[0] - wall) / (os.cpu_count() or 1) if now[0] > wall else 0.0
        metrics = []
        for name, unit, value in (
            ("process.uptime", "s", max(time.time() - self._started, 0.0)),
            ("process.cpu.utilization", "1", max(utilization, 0.0)),
        ):
            metric = Metric(name=name, unit=unit)
            metric.gauge.data_points.add(time_unix_nano=end_ns, as_double=value)
            metrics.append(metric.SerializeToString())
        rss = rss_bytes()
        if rss is not None:
            metric = Metric(name="process.memory.usage", unit="By")
            metric.gauge.data_points.add(time_unix_nano=end_ns, as_int=rss)
            metrics.append(metric.SerializeToString())
        return envelope(resource, scope, metrics)
