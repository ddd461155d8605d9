"""Per-minute rollups: what both stores keep beside their request records, and what the report
reads, so that analytics over a million requests add up minutes instead of rows.

Each batch a store writes is also added up here, per minute and

* per endpoint: ``(minute, method, route, status class)``, and
* per consumer: ``(minute, consumer id, status class)``,

into a :class:`Tally`: the count, client and server errors, the sums of durations and sizes,
and a latency histogram. The store adds a batch's tallies to its rollup rows in the same
transaction as the records, and only for records it did not hold yet, so a batch written
twice (a retry after a lost answer) is counted once::

    rollups = Rollups.of(new_records)
    for (minute, method, route, status_class), tally in rollups.endpoints.items():
        ...  # INSERT ... ON CONFLICT DO UPDATE SET count = count + excluded.count, ...

Deliberate choices:

* **Histogram buckets are logarithmic**, ``RATIO = 2 ** (1/16)`` apart: bucket ``i`` holds the
  durations in ``[RATIO**i, RATIO**(i+1))`` ms, and a percentile is reported as the value
  :func:`bucket_value` that is at most :data:`ERROR_BOUND` (2.17%) away, relatively, from any
  duration in that bucket. Percentiles are nearest-rank over the buckets, so a reported p99
  is within 2.17% of the exact nearest-rank p99 of the same requests. Durations under
  1 µs count as 1 µs.
* A histogram is stored as a JSON object ``{"<bucket>": count}`` (text in SQLite, ``jsonb`` in
  PostgreSQL): sparse, readable with each database's JSON functions, merged by
  :func:`merge_hist_json` (registered as a SQLite function) or its SQL twin in PostgreSQL.
* Keys hold no NULL, since SQL never finds two NULLs equal (an upsert would add a row per
  batch): an unmatched route and a request without a consumer are stored as ``""``
  (:data:`NONE`), which no real route or consumer id can be, and read back as None by
  :func:`key_value`. The status class is ``status // 100``, 0 when there was no response.
* Consumer labels (name, group) are kept per consumer id, the latest non-null values seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spanlytics._json import dumps_text, loads_text

if TYPE_CHECKING:
    from spanlytics.record import RequestRecord

__all__ = [
    "ERROR_BOUND",
    "MINUTE_NS",
    "NONE",
    "RATIO",
    "TALLY_COLUMNS",
    "Rollups",
    "Tally",
    "add_hist",
    "bucket_of",
    "bucket_value",
    "hist_json",
    "key_value",
    "merge_hist_json",
    "parse_hist",
    "percentile_of",
    "status_class",
]

MINUTE_NS = 60_000_000_000
RATIO = 2 ** (1 / 16)
ERROR_BOUND = (RATIO - 1) / (RATIO + 1)
"""The largest relative error of a reported percentile against the exact one: 2.17%."""
NONE = ""
"""A rollup key's stand-in for None (no route matched, no consumer)."""

_LOG_RATIO = math.log(RATIO)
_MIN_MS = 0.001
_MAX_MS = 1e12  # about 31 years: infinities and absurd values land here


def bucket_of(duration_ms: float) -> int:
    """The histogram bucket of a duration in milliseconds."""
    if not duration_ms > _MIN_MS:  # also NaN and negatives
        duration_ms = _MIN_MS
    elif not duration_ms < _MAX_MS:
        duration_ms = _MAX_MS
    return math.floor(math.log(duration_ms) / _LOG_RATIO)


def bucket_value(bucket: int) -> float:
    """The value reported for a bucket: ``2 * RATIO**(i+1) / (1 + RATIO)``, within
    :data:`ERROR_BOUND` of both ends of ``[RATIO**i, RATIO**(i+1))``."""
    return 2 * RATIO ** (bucket + 1) / (1 + RATIO)


def status_class(status: int | None) -> int:
    """1 to 5 for a status code, 0 when the app never answered."""
    return 0 if status is None else status // 100


def key_value(text: str | None) -> str | None:
    """A key column read back: :data:`NONE` is None."""
    return None if text is None or text == NONE else text


def hist_json(hist: Mapping[int, int]) -> str:
    return dumps_text({str(k): v for k, v in sorted(hist.items())})


def parse_hist(value: str | bytes | Mapping[str, int] | None) -> dict[int, int]:
    """A stored histogram (JSON text, or the mapping a driver already decoded) as bucket counts."""
    if value is None:
        return {}
    if isinstance(value, bytes):
        value = value.decode()
    pairs = loads_text(value) if isinstance(value, str) else value
    return {int(k): int(v) for k, v in pairs.items()}


def merge_hist_json(a: str | None, b: str | None) -> str:
    """Two stored histograms added up (the SQLite function ``spanlytics_hist_merge``, which
    the local writer calls for every rollup row a batch adds to): the keys stay text, in
    first-seen order, so no bucket is converted or sorted (3x faster than through
    :func:`parse_hist`)."""
    merged: dict[str, int] = loads_text(a) if a else {}
    for bucket, count in (loads_text(b) if b else {}).items():
        merged[bucket] = merged.get(bucket, 0) + count
    return dumps_text(merged)


def add_hist(into: dict[int, int], other: Mapping[int, int]) -> None:
    for bucket, count in other.items():
        into[bucket] = into.get(bucket, 0) + count


def percentile_of(hist: Mapping[int, int], pct: int) -> float | None:
    """Nearest-rank percentile over bucket counts (None for an empty histogram)."""
    total = sum(hist.values())
    if total <= 0:
        return None
    rank = max(1, -(-pct * total // 100))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket_value(bucket)
    return bucket_value(max(hist))


@dataclass(slots=True)
class Tally:
    """The requests of one rollup key: counts, sums and a latency histogram."""

    count: int = 0
    errors: int = 0  # status >= 400
    server_errors: int = 0  # status >= 500 or no status
    duration_ms_sum: float = 0.0
    request_size_sum: int = 0
    request_size_n: int = 0
    response_size_sum: int = 0
    response_size_n: int = 0
    hist: dict[int, int] = field(default_factory=dict)

    def add(
        self, status: int | None, duration_ms: float, request_size: int | None, response_size: int | None
    ) -> None:
        self.count += 1
        self.errors += status is not None and status >= 400
        self.server_errors += status is None or status >= 500
        self.duration_ms_sum += duration_ms
        if request_size is not None:
            self.request_size_sum += request_size
            self.request_size_n += 1
        if response_size is not None:
            self.response_size_sum += response_size
            self.response_size_n += 1
        bucket = bucket_of(duration_ms)
        self.hist[bucket] = self.hist.get(bucket, 0) + 1

    def merge(self, other: Tally) -> None:
        self.count += other.count
        self.errors += other.errors
        self.server_errors += other.server_errors
        self.duration_ms_sum += other.duration_ms_sum
        self.request_size_sum += other.request_size_sum
        self.request_size_n += other.request_size_n
        self.response_size_sum += other.response_size_sum
        self.response_size_n += other.response_size_n
        add_hist(self.hist, other.hist)

    def columns(self) -> tuple[int, int, int, float, int, int, int, int, str]:
        """The tally's columns in :data:`TALLY_COLUMNS` order, the histogram as JSON text."""
        return (
            self.count,
            self.errors,
            self.server_errors,
            self.duration_ms_sum,
            self.request_size_sum,
            self.request_size_n,
            self.response_size_sum,
            self.response_size_n,
            hist_json(self.hist),
        )


TALLY_COLUMNS = (
    "count",
    "errors",
    "server_errors",
    "duration_ms_sum",
    "request_size_sum",
    "request_size_n",
    "response_size_sum",
    "response_size_n",
    "hist",
)
"""A rollup row's value columns, after its key columns; ``hist`` is merged, the rest added."""

EndpointKey = tuple[int, str, str, int]
"""(minute, method, route or NONE, status class)"""
ConsumerKey = tuple[int, str, int]
"""(minute, consumer id or NONE, status class)"""


@dataclass(slots=True)
class Rollups:
    """One batch added up: tallies per endpoint key and per consumer key, and the latest
    consumer labels (id -> (name, group, start_time_ns of the request that carried them))."""

    endpoints: dict[EndpointKey, Tally] = field(default_factory=dict)
    consumers: dict[ConsumerKey, Tally] = field(default_factory=dict)
    labels: dict[str, tuple[str | None, str | None, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, records: Iterable[RequestRecord]) -> Rollups:
        rollups = cls()
        for r in records:
            rollups.add(r)
        return rollups

    def add(self, r: RequestRecord) -> None:
        c = r.consumer
        cid, name, group = (None, None, None) if c is None else (c.identifier, c.name, c.group)
        self.add_fields(
            r.start_time_ns, r.method, r.route, r.status, r.duration_ms,
            r.request_size, r.response_size, cid, name, group,
        )  # fmt: skip

    def add_fields(
        self,
        start_time_ns: int,
        method: str,
        route: str | None,
        status: int | None,
        duration_ms: float,
        request_size: int | None,
        response_size: int | None,
        consumer_id: str | None,
        consumer_name: str | None,
        consumer_group: str | None,
    ) -> None:
        """One request, from its stored fields (the columns a store reads back for a record)."""
        minute = start_time_ns // MINUTE_NS
        klass = status_class(status)
        ekey = (minute, method, NONE if route is None else route, klass)
        tally = self.endpoints.get(ekey)
        if tally is None:
            tally = self.endpoints[ekey] = Tally()
        tally.add(status, duration_ms, request_size, response_size)
        ckey = (minute, NONE if consumer_id is None else consumer_id, klass)
        tally = self.consumers.get(ckey)
        if tally is None:
            tally = self.consumers[ckey] = Tally()
        tally.add(status, duration_ms, request_size, response_size)
        if consumer_id is not None and (consumer_name is not None or consumer_group is not None):
            seen = self.labels.get(consumer_id)
            if seen is None or seen[2] <= start_time_ns:
                self.labels[consumer_id] = (
                    consumer_name if consumer_name is not None else (seen[0] if seen else None),
                    consumer_group if consumer_group is not None else (seen[1] if seen else None),
                    start_time_ns,
                )
