"""Per-endpoint and per-consumer summaries of a store, as JSON-ready data or text tables.

The numbers come from the store's per-minute rollups through the one reader interface
(:func:`spanlytics.destinations.any_store.open_reader`: a SQLite path or a ``postgresql://``
URL); this module adds them up and formats them::

    report = build_report("./spanlytics.db", since_s=parse_duration("24h"))
    print(format_report(report))

Deliberate choices:

* Percentiles come from the rollups' latency histograms (logarithmic buckets): ``pN`` is the
  nearest-rank percentile over the buckets, reported as the bucket's value, so it is within
  :data:`ERROR_BOUND` (2.17%, relatively) of the exact nearest-rank value of the same
  requests (``sorted[ceil(N/100 * n) - 1]``, what :func:`percentile` computes). Counts, error
  counts and mean sizes are exact.
* A window (``since_s``) is exact too: whole minutes come from the rollups, and the records
  of its first, partial minute are read one by one (``raw_rows``).
* Errors follow :class:`~spanlytics.record.RequestRecord`: ``error_count`` counts
  status >= 400; ``server_error_count`` counts status >= 500 *or* no status at all (the app
  crashed before responding), so it can exceed ``error_count``.
* Requests that matched no route keep ``route: null`` with ``"unmatched": true`` in the data;
  only the text table labels them ``(unmatched)``.
* Consumers get the same figures as endpoints. A consumer's ``name``/``group`` are the latest
  non-null values the store has seen for it (in any window).
* Rollups are kept longer than records (``SPANLYTICS_ROLLUP_RETENTION``, 400 days, against
  30 for records), so an all-time report still counts requests whose records are gone.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence
from typing import Any

from spanlytics.destinations.any_store import is_postgres_url, open_reader
from spanlytics.destinations.rollups import (
    ERROR_BOUND,
    MINUTE_NS,
    Tally,
    key_value,
    parse_hist,
    percentile_of,
)
from spanlytics.destinations.stores import StoreReader
from spanlytics.durations import MAX_SINCE_S, parse_duration
from spanlytics.durations import check_window as _check_window

__all__ = [
    "ERROR_BOUND",
    "MAX_SINCE_S",
    "build_report",
    "format_report",
    "parse_duration",
    "percentile",
    "summary",
    "window_tallies",
]

_PERCENTILES = (50, 95, 99)
_MAX_CELL = 60


def percentile(sorted_values: Sequence[float], pct: int) -> float | None:
    """Nearest-rank percentile of already sorted values (``None`` when there are none)."""
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, -(-pct * n // 100))  # ceil(pct * n / 100) in integers: no float rounding
    return sorted_values[min(rank, n) - 1]


def _mean(total: int, count: int) -> float | None:
    return total / count if count else None


def _tally(row: Sequence[Any], keys: int) -> Tally:
    """A rollup row's tally (the columns after its ``keys`` key columns)."""
    tally = Tally(*row[keys:-1])
    tally.hist = parse_hist(row[-1])
    return tally


def summary(tally: Tally) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "count": tally.count,
        "error_count": tally.errors,
        "server_error_count": tally.server_errors,
        "error_rate": tally.errors / tally.count if tally.count else 0.0,
    }
    for pct in _PERCENTILES:
        entry[f"p{pct}_ms"] = percentile_of(tally.hist, pct)
    entry["mean_request_size"] = _mean(tally.request_size_sum, tally.request_size_n)
    entry["mean_response_size"] = _mean(tally.response_size_sum, tally.response_size_n)
    return entry


def _add(into: dict[Any, Tally], key: Any, tally: Tally) -> None:
    if key in into:
        into[key].merge(tally)
    else:
        into[key] = tally


def window_tallies(
    reader: StoreReader, since_ns: int | None, until_ns: int | None = None, *, top: int | None = None
) -> tuple[dict[tuple[str, str | None], Tally], dict[str | None, Tally]]:
    """Tallies per endpoint and per consumer in ``[since_ns, until_ns)`` (None: no bound):
    whole minutes from the rollups, and the records of the window's partial minutes at its
    edges one by one, so the window is exact. ``top``: latency histograms are only needed
    for the ``top`` endpoints and consumers with the most requests (of the rollups)."""
    endpoints: dict[tuple[str, str | None], Tally] = {}
    consumers: dict[str | None, Tally] = {}
    from_minute = None if since_ns is None else -(-since_ns // MINUTE_NS)
    until_minute = None if until_ns is None else until_ns // MINUTE_NS
    if from_minute is not None and until_minute is not None and until_minute < from_minute:
        until_minute = from_minute  # a window inside one minute: its records alone
    for row in reader.endpoint_rollups(from_minute, until_minute, top=top):
        _add(endpoints, (row[0], key_value(row[1])), _tally(row, 3))
    for crow in reader.consumer_rollups(from_minute, until_minute, top=top):
        _add(consumers, key_value(crow[0]), _tally(crow, 2))
    edges = []
    if since_ns is not None and from_minute is not None and since_ns < from_minute * MINUTE_NS:
        edges.append(
            (
                since_ns,
                from_minute * MINUTE_NS if until_ns is None else min(until_ns, from_minute * MINUTE_NS),
            )
        )
    if until_ns is not None and until_minute is not None and until_minute * MINUTE_NS < until_ns:
        edges.append(
            (
                until_minute * MINUTE_NS if since_ns is None else max(until_minute * MINUTE_NS, since_ns),
                until_ns,
            )
        )
    for start, end in edges:
        for method, route, consumer_id, status, duration_ms, req, resp in reader.raw_rows(start, end):
            for tally in (
                endpoints.setdefault((method, route), Tally()),
                consumers.setdefault(consumer_id, Tally()),
            ):
                tally.add(status, duration_ms, req, resp)
    return endpoints, consumers


def _open(db: str | os.PathLike[str]) -> StoreReader:
    text = os.fspath(db)
    return open_reader(text if is_postgres_url(text) else os.path.expanduser(text))


def build_report(
    db: str | os.PathLike[str], since_s: float | None = None, now_ns: int | None = None
) -> dict[str, Any]:
    """Summarise the requests in a store (a SQLite path or a ``postgresql://`` URL), optionally
    only the last ``since_s`` seconds.

    Returns ``{"endpoints": [...], "consumers": [...], "total": n, "since": ...}`` where
    ``since`` is ``None`` (everything) or ``{"seconds", "start_time_ns", "start"}`` (ISO 8601,
    UTC). Endpoints and consumers are sorted by request count, highest first.

    Raises :class:`FileNotFoundError` when there is no database at a path,
    :class:`~spanlytics.destinations.stores.StoreError` (or its subclass for SQLite files,
    ``SchemaError``) when the store cannot be read, and :class:`ValueError` when ``since_s``
    is not in (0, :data:`MAX_SINCE_S`].
    """
    since: dict[str, Any] | None = None
    since_ns: int | None = None
    if since_s is not None:
        _check_window(since_s, f"{since_s!r} s")
        now = time.time_ns() if now_ns is None else now_ns
        since_ns = now - round(since_s * 1e9)
        start = dt.datetime.fromtimestamp(since_ns / 1e9, tz=dt.timezone.utc)
        since = {
            "seconds": since_s,
            "start_time_ns": since_ns,
            "start": start.isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
    with _open(db) as reader:  # one snapshot for both tables
        endpoint_tallies, consumer_tallies = window_tallies(reader, since_ns)
        labels = {cid: (name, group) for cid, name, group in reader.consumer_labels()}
    endpoints = [
        {"method": method, "route": route, "unmatched": route is None, **summary(tally)}
        for (method, route), tally in endpoint_tallies.items()
        if tally.count
    ]
    endpoints.sort(key=lambda e: (-e["count"], e["method"], e["route"] is None, e["route"] or ""))
    consumers = []
    for consumer_id, tally in consumer_tallies.items():
        if not tally.count:
            continue
        name, group = labels.get(consumer_id, (None, None)) if consumer_id is not None else (None, None)
        consumers.append({"consumer_id": consumer_id, "name": name, "group": group, **summary(tally)})
    consumers.sort(key=lambda c: (-c["count"], c["consumer_id"] is None, c["consumer_id"] or ""))
    return {
        "endpoints": endpoints,
        "consumers": consumers,
        "total": sum(e["count"] for e in endpoints),
        "since": since,
    }


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    # Labels come from requests (a consumer header): keep terminal control codes out.
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def _table(headers: Sequence[str], rows: list[list[str]], left: int) -> list[str]:
    """Align columns; the first ``left`` columns are text (left-aligned), the rest numbers."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_report(report: dict[str, Any]) -> str:
    """Two aligned plain-text tables (endpoints, consumers) for a terminal."""
    since = report.get("since")
    window = f"since {since['start']}" if since else "all time"
    lines = [f"{report['total']:,} requests ({window})", ""]
    if not report["endpoints"]:
        return "\n".join([*lines, "No requests recorded."])
    endpoint_rows = [
        [
            _cell(e["method"]),
            "(unmatched)" if e["route"] is None else _cell(e["route"]),
            _cell(e["count"]),
            _cell(e["error_rate"] * 100),
            _cell(e["p50_ms"]),
            _cell(e["p95_ms"]),
            _cell(e["p99_ms"]),
            _cell(e["mean_request_size"], 0),
            _cell(e["mean_response_size"], 0),
        ]
        for e in report["endpoints"]
    ]
    headers = ["METHOD", "ROUTE", "COUNT", "ERR %", "P50 MS", "P95 MS", "P99 MS", "REQ B", "RESP B"]
    lines += ["Endpoints", *_table(headers, endpoint_rows, left=2), ""]
    consumer_rows = [
        [
            "(none)" if c["consumer_id"] is None else _cell(c["consumer_id"]),
            _cell(c["name"]),
            _cell(c["group"]),
            _cell(c["count"]),
            _cell(c["error_count"]),
            _cell(c["server_error_count"]),
            _cell(c.get("p50_ms")),
            _cell(c.get("p95_ms")),
            _cell(c.get("p99_ms")),
            _cell(c.get("mean_request_size"), 0),
            _cell(c.get("mean_response_size"), 0),
        ]
        for c in report["consumers"]
    ]
    headers = [
        "CONSUMER",
        "NAME",
        "GROUP",
        "COUNT",
        "ERRORS",
        "5XX",
        "P50 MS",
        "P95 MS",
        "P99 MS",
        "REQ B",
        "RESP B",
    ]
    lines += ["Consumers", *_table(headers, consumer_rows, left=3)]
    return "\n".join(lines)
