"""The report's SQL over the local schema, next to the columns it reads."""

from __future__ import annotations


def _window(since_ns: int | None) -> tuple[str, tuple[int, ...]]:
    """The WHERE clause (and its parameters) of a report query: none at all for all time.

    The report queries write their ORDER BY columns as ``+column``: the unary plus keeps
    SQLite's planner from walking the (method, route) or consumer index to skip the sort, which
    reads every row of the table in index order however short the window. Without that option
    it searches the start-time index for the window and sorts only the rows it found: a
    one-hour window of a 1M-record store is read in milliseconds instead of seconds. For all
    time there is no WHERE clause, so the table is scanned once in storage order (a range over
    the whole start-time index would look every row up one by one).
    """
    if since_ns is None:
        return "", ()
    return " WHERE start_time_ns >= ?", (since_ns,)


def endpoints_query(since_ns: int | None) -> tuple[str, tuple[int, ...]]:
    """The SQL (and parameters) behind the endpoints table: rows grouped by endpoint, fastest first.

    Each row: ``method, route, duration_ms, status, request_size, response_size``."""
    where, params = _window(since_ns)
    sql = (
        "SELECT method, route, duration_ms, status, request_size, response_size FROM requests"
        f"{where} ORDER BY +method, +route, duration_ms"
    )
    return sql, params


def consumers_query(since_ns: int | None) -> tuple[str, tuple[int, ...]]:
    """The SQL (and parameters) behind the consumers table: rows grouped by consumer, oldest first.

    Each row: ``consumer_id, consumer_name, consumer_group, status``."""
    where, params = _window(since_ns)
    sql = (
        "SELECT consumer_id, consumer_name, consumer_group, status FROM requests"
        f"{where} ORDER BY +consumer_id, +start_time_ns"
    )
    return sql, params
