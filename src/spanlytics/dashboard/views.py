"""What each dashboard view shows, read from one store snapshot: plain data and charts for
the templates, no web framework (the app and ``spanlytics report --html`` share them).

Charts, KPIs and tables add up the same buckets from the rollups: the whole minutes (or,
for windows charted per hour, the whole hours) that the window touches, so their first and
last bucket may hold requests just outside the window, and a day's page reads a few
thousand rollup rows, not a million records. Breakdowns that the rollups do not keep (an
endpoint by consumer and by status code, a consumer's endpoints and slowest calls) are added
up from the newest :data:`SAMPLE` records of the window, a bounded read at any volume.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Protocol, TypeVar, cast

from spanlytics.dashboard.charts import bar_chart, line_chart
from spanlytics.dashboard.params import Window
from spanlytics.destinations.rollups import MINUTE_NS, NONE, Tally, parse_hist, percentile_of
from spanlytics.destinations.stores import LogRow, RequestFilter, SeriesRow, StoreReader
from spanlytics.record import RequestRecord
from spanlytics.report import summary, window_tallies

__all__ = [
    "SAMPLE",
    "SCAN",
    "bounded",
    "consumer_view",
    "endpoint_view",
    "overview",
    "record_view",
    "request_log",
]

TOP = 10
T = TypeVar("T")
MAX_BARS = 200
SAMPLE = 10_000
SCAN = 50_000
"""The most records one page of the request log (or the endpoint's recent failures) reads."""
"""Breakdowns the rollups do not keep read at most the newest this many records of the window."""
CLASSES = ((2, "2xx"), (3, "3xx"), (4, "4xx"), (5, "5xx"), (1, "1xx"), (0, "none"))


def _label(bucket: int, per_hour: bool) -> str:
    minute = bucket * 60 if per_hour else bucket
    moment = dt.datetime.fromtimestamp(minute * 60, tz=dt.timezone.utc)
    return moment.strftime("%m-%d %H:00" if per_hour else "%H:%M")


def charts(rows: Iterable[SeriesRow], window: Window, what: str) -> dict[str, Any]:
    """The three charts of a series: requests per status class, error rate, latency."""
    buckets = window.buckets
    step = max(1, -(-len(buckets) // MAX_BARS))  # long windows: several hours a bar
    n = -(-len(buckets) // step)
    per_class = {klass: [0.0] * n for klass, _ in CLASSES}
    tallies = [Tally() for _ in range(n)]
    for row in rows:
        if row[0] not in buckets:
            continue
        i = (row[0] - buckets.start) // step
        tally = Tally(*row[2:-1])
        tally.hist = parse_hist(row[-1])
        per_class[row[1]][i] += tally.count
        tallies[i].merge(tally)
    labels = [_label(b, window.per_hour) for b in buckets[::step]]
    stacks = [(name, f"c{klass}", per_class[klass]) for klass, name in CLASSES if any(per_class[klass])]
    unit = ("hour" if step == 1 else f"{step} hours") if window.per_hour else "minute"
    errors = [t.errors / t.count * 100 if t.count else None for t in tallies]
    latency = [(f"p{pct}", f"p{pct}", [percentile_of(t.hist, pct) for t in tallies]) for pct in (50, 95, 99)]
    mix = {name: sum(per_class[klass]) for klass, name in CLASSES if any(per_class[klass])}
    return {
        "total": summary(_total(tallies)),
        "requests": bar_chart(labels, stacks, f"{what} per {unit}"),
        "errors": line_chart(labels, [("errors", "err", errors)], "Error rate (status >= 400)", "%"),
        "latency": line_chart(labels, latency, "Latency", " ms"),
        "mix": mix,
    }


def _total(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.merge(tally)
    return total


def _labels(reader: StoreReader) -> dict[str, tuple[str | None, str | None]]:
    return {cid: (name, group) for cid, name, group in reader.consumer_labels()}


def _window_tallies(reader: StoreReader, window: Window, top: int | None) -> Any:
    start, end = window.covered
    return window_tallies(reader, start * MINUTE_NS, end * MINUTE_NS, top=top)


class _Forks(Protocol):
    def fork(self) -> StoreReader: ...


def _alongside(reader: StoreReader, read: Callable[[StoreReader], T]) -> Callable[[], T]:
    """``read`` on a second reader of the same snapshot in a thread, when the store has one
    (PostgreSQL: its server runs the two reads on two cores), else on ``reader`` when the
    result is asked for."""
    if not hasattr(reader, "fork"):
        return lambda: read(reader)
    other = cast(_Forks, reader).fork()

    def in_thread() -> T:
        with other:
            return read(other)

    pool = ThreadPoolExecutor(1, thread_name_prefix="spanlytics-dashboard")
    future = pool.submit(in_thread)
    pool.shutdown(wait=False)
    return future.result


def overview(reader: StoreReader, window: Window, top: int | None = TOP) -> dict[str, Any]:
    """The overview; ``top``: the tables show that many endpoints and consumers (None: all),
    the others come without percentiles. Its charts are read alongside its tables."""
    series = _alongside(reader, lambda r: list(r.endpoint_series(*window.minutes, per_hour=window.per_hour)))
    endpoints, consumers = _window_tallies(reader, window, top)
    labels = _labels(reader)
    top_endpoints = sorted(
        ({"method": m, "route": r, **summary(t)} for (m, r), t in endpoints.items() if t.count),
        key=lambda e: (-e["count"], e["method"], e["route"] or ""),
    )
    top_consumers = sorted(
        (
            {"consumer_id": cid, "name": labels.get(cid, (None, None))[0] if cid else None, **summary(t)}
            for cid, t in consumers.items()
            if t.count
        ),
        key=lambda c: (-c["count"], c["consumer_id"] or ""),
    )
    return {
        "total": summary(_total(endpoints.values())),
        "endpoints": top_endpoints,
        "consumers": top_consumers,
        "charts": charts(series(), window, "Requests"),
    }


def endpoint_view(reader: StoreReader, window: Window, method: str, route: str | None) -> dict[str, Any]:
    where = RequestFilter(
        since_ns=window.since_ns,
        until_ns=window.until_ns,
        method=method,
        route=NONE if route is None else route,
    )
    labels = _labels(reader)
    by_consumer = [
        {"consumer_id": row[0], "name": labels.get(str(row[0]), (None, None))[0], **_group(row)}
        for row in reader.request_groups("consumer", where, limit=TOP * 2, sample=SAMPLE)
    ]
    failures = reader.request_page(bounded(reader, replace(where, failed=True), None, SCAN)[0], TOP * 2)
    series = reader.endpoint_series(*window.minutes, per_hour=window.per_hour, endpoint=(method, route))
    return {
        "method": method,
        "route": route,
        "by_status": [
            {"status": row[0], **_group(row)} for row in reader.request_groups("status", where, sample=SAMPLE)
        ],
        "by_consumer": by_consumer,
        "sample": SAMPLE,
        "scan": SCAN,
        "failures": log_rows(failures),
        "charts": charts(series, window, "Requests"),
    }


def consumer_view(reader: StoreReader, window: Window, consumer_id: str | None) -> dict[str, Any]:
    name, group = _labels(reader).get(consumer_id, (None, None)) if consumer_id else (None, None)
    where = RequestFilter(
        since_ns=window.since_ns,
        until_ns=window.until_ns,
        consumer_id=NONE if consumer_id is None else consumer_id,
    )
    series = reader.consumer_series(*window.minutes, consumer_id, per_hour=window.per_hour)
    return {
        "consumer_id": consumer_id,
        "name": name,
        "group": group,
        "endpoints": [
            {"method": row[0], "route": row[1], **_group(row)}
            for row in reader.request_groups("endpoint", where, limit=TOP * 2, sample=SAMPLE)
        ],
        "sample": SAMPLE,
        "slowest": log_rows(reader.request_page(where, TOP, slowest=True, sample=SAMPLE)),
        "charts": charts(series, window, "Requests"),
    }


def _group(row: Sequence[Any]) -> dict[str, Any]:
    count, errors, server_errors, duration_sum, duration_max = row[2:7]
    return {
        "count": count,
        "error_count": errors,
        "server_error_count": server_errors,
        "error_rate": errors / count if count else 0.0,
        "mean_ms": duration_sum / count if count else None,
        "max_ms": duration_max,
    }


def log_rows(rows: Iterable[LogRow]) -> list[dict[str, Any]]:
    keys = ("id", "start_time_ns", "method", "route", "path", "status", "duration_ms")
    return [
        {
            **dict(zip(keys, row[:7], strict=True)),
            "consumer_id": row[7],
            "consumer_name": row[8],
            "exception_type": row[9],
            "cursor": f"{row[1]}.{row[0]}",
        }
        for row in rows
    ]


def bounded(
    reader: StoreReader, where: RequestFilter, before: tuple[int, str] | None, scan: int
) -> tuple[RequestFilter, int | None]:
    """``where`` narrowed to the newest ``scan`` records of its window from ``before`` on (its
    start raised to theirs: a bounded read whatever the filters), and that start (None: the
    window holds no more, ``where`` is unchanged)."""
    floor = reader.scan_floor(where, scan, before)
    if floor is None:
        return where, None
    return replace(where, since_ns=floor if where.since_ns is None else max(where.since_ns, floor)), floor


def request_log(
    reader: StoreReader,
    where: RequestFilter,
    before: tuple[int, str] | None,
    limit: int = 50,
    scan: int = SCAN,
) -> dict[str, Any]:
    """A page of the log, and the cursor of the next one (None: this is the last).

    A page reads at most the newest ``scan`` records of the window older than the cursor (and
    those that started in the same nanosecond as the last of them): a filter that matches
    little (a path text, a rare status) answers as fast as any other. When such a page is not
    full but older records remain, ``searched`` is how far back it read and ``next`` goes on
    searching from there."""
    narrowed, floor = bounded(reader, where, before, scan)
    rows = log_rows(reader.request_page(narrowed, limit + 1, before))
    more = len(rows) > limit
    rows = rows[:limit]
    labels = [_clock(row["start_time_ns"]) for row in rows]
    chart = bar_chart(
        labels[::-1],
        [("duration", "c2", [row["duration_ms"] for row in rows[::-1]])],
        "Durations on this page (oldest left)",
        " ms",
    )
    if more:
        following: str | None = rows[-1]["cursor"]
    else:  # searched down to the floor: on from the records that started before it
        following = None if floor is None else f"{floor}."
    return {
        "rows": rows,
        "next": following,
        "searched": None if more or floor is None else _clock(floor),
        "scan": scan,
        "chart": chart,
    }


def _clock(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime("%H:%M:%S")


def _pretty(body: str | None, content_type: str | None) -> str | None:
    """A JSON body indented; anything else as it is."""
    if body is None:
        return None
    if content_type is None or "json" in content_type or body[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return body


def trace_link(template: str | None, trace_id: str) -> str | None:
    """``SPANLYTICS_TRACE_URL`` with ``{trace_id}`` filled in: only an http(s) URL, and only a
    hex trace id (the id is stored from the span, but the store is not trusted)."""
    if not template or not template.startswith(("https://", "http://")) or "{trace_id}" not in template:
        return None
    if not trace_id or not all(c in "0123456789abcdefABCDEF" for c in trace_id):
        return None
    return template.replace("{trace_id}", trace_id)


def record_view(record: RequestRecord, trace_url: str | None) -> dict[str, Any]:
    return {
        "r": record,
        "started": dt.datetime.fromtimestamp(record.start_time_ns / 1e9, tz=dt.timezone.utc).isoformat(
            timespec="milliseconds"
        ),
        "request_body": _pretty(record.request_body, record.request_content_type),
        "response_body": _pretty(record.response_body, record.response_content_type),
        "trace_link": trace_link(trace_url, record.trace_id),
    }
