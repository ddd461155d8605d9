"""Per-endpoint and per-consumer summaries of a local store, as JSON-ready data or text tables.

The rows come from the store's reader (:class:`~spanlytics.destinations.local.LocalReader`,
whose SQL lives beside the schema in ``destinations/local/queries.py``); this module adds
them up and formats them.

    report = build_report("./spanlytics.db", since_s=parse_duration("24h"))
    print(format_report(report))

Deliberate choices:

* Percentiles use the **nearest-rank** method: ``pN`` is the smallest stored duration with at
  least N% of the group's durations at or below it (``sorted[ceil(N/100 * n) - 1]``). It is
  always an observed value, so 1..100 ms gives p50=50, p95=95, p99=99 exactly.
* Errors follow :class:`~spanlytics.record.RequestRecord`: ``error_count`` counts
  status >= 400; ``server_error_count`` counts status >= 500 *or* no status at all (the app
  crashed before responding), so it can exceed ``error_count``.
* Requests that matched no route keep ``route: null`` with ``"unmatched": true`` in the data;
  only the text table labels them ``(unmatched)``.
* A consumer's ``name``/``group`` are the latest non-null values among the reported requests.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator, Sequence
from itertools import groupby
from typing import Any

from spanlytics.destinations.local.reader import ConsumerRow, EndpointRow, LocalReader
from spanlytics.durations import MAX_SINCE_S, parse_duration
from spanlytics.durations import check_window as _check_window

__all__ = [
    "MAX_SINCE_S",
    "build_report",
    "format_report",
    "parse_duration",
    "percentile",
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


def _endpoints(rows: Iterator[EndpointRow]) -> list[dict[str, Any]]:
    # One ordered pass: rows arrive grouped by endpoint with durations already sorted, so only
    # the current endpoint's durations are held in memory.
    endpoints = []
    for (method, route), group in groupby(rows, key=lambda row: (row[0], row[1])):
        durations: list[float] = []
        errors = server_errors = 0
        req_total = req_n = resp_total = resp_n = 0
        for _, _, duration, status, req_size, resp_size in group:
            durations.append(duration)
            errors += status is not None and status >= 400
            server_errors += status is None or status >= 500
            if req_size is not None:
                req_total, req_n = req_total + req_size, req_n + 1
            if resp_size is not None:
                resp_total, resp_n = resp_total + resp_size, resp_n + 1
        count = len(durations)
        entry: dict[str, Any] = {
            "method": method,
            "route": route,
            "unmatched": route is None,
            "count": count,
            "error_count": errors,
            "server_error_count": server_errors,
            "error_rate": errors / count,
        }
        for pct in _PERCENTILES:
            entry[f"p{pct}_ms"] = percentile(durations, pct)
        entry["mean_request_size"] = _mean(req_total, req_n)
        entry["mean_response_size"] = _mean(resp_total, resp_n)
        endpoints.append(entry)
    endpoints.sort(key=lambda e: (-e["count"], e["method"], e["route"] is None, e["route"] or ""))
    return endpoints


def _consumers(rows: Iterator[ConsumerRow]) -> list[dict[str, Any]]:
    consumers = []
    for consumer_id, group in groupby(rows, key=lambda row: row[0]):
        entry: dict[str, Any] = {
            "consumer_id": consumer_id,
            "name": None,
            "group": None,
            "count": 0,
            "error_count": 0,
            "server_error_count": 0,
        }
        for _, name, label, status in group:  # oldest first: later non-null labels win
            entry["name"] = name if name is not None else entry["name"]
            entry["group"] = label if label is not None else entry["group"]
            entry["count"] += 1
            entry["error_count"] += status is not None and status >= 400
            entry["server_error_count"] += status is None or status >= 500
        consumers.append(entry)
    consumers.sort(key=lambda c: (-c["count"], c["consumer_id"] is None, c["consumer_id"] or ""))
    return consumers


def build_report(
    path: str | os.PathLike[str], since_s: float | None = None, now_ns: int | None = None
) -> dict[str, Any]:
    """Summarise the requests in a local store, optionally only the last ``since_s`` seconds.

    Returns ``{"endpoints": [...], "consumers": [...], "total": n, "since": ...}`` where
    ``since`` is ``None`` (everything) or ``{"seconds", "start_time_ns", "start"}`` (ISO 8601,
    UTC). Endpoints and consumers are sorted by request count, highest first.

    Raises :class:`FileNotFoundError` when there is no database at ``path`` and
    :class:`ValueError` when ``since_s`` is not in (0, :data:`MAX_SINCE_S`].
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
    with LocalReader(path) as reader:  # one snapshot for both tables
        endpoints = _endpoints(reader.endpoint_rows(since_ns))
        consumers = _consumers(reader.consumer_rows(since_ns))
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
        ]
        for c in report["consumers"]
    ]
    headers = ["CONSUMER", "NAME", "GROUP", "COUNT", "ERRORS", "5XX"]
    lines += ["Consumers", *_table(headers, consumer_rows, left=3)]
    return "\n".join(lines)
