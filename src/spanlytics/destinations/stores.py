"""The stores behind one interface: what the report (and the dashboard) read, and pruning.

This module holds the interface (:class:`StoreReader`, the row shapes, :class:`StoreError`,
:class:`Pruned`), which each store implements; :mod:`spanlytics.destinations.any_store`
opens the right one for a ``db`` that is a SQLite path (the local store) or a
``postgresql://`` URL (the PostgreSQL store), so that callers never care which::

    with open_reader("./spanlytics.db") as reader:          # or "postgresql://..."
        for row in reader.endpoint_rollups(from_minute=None):
            ...
    removed = prune("postgresql://app@db/api", older_than_s=7 * 86400)

Every reader reads one consistent snapshot inside its ``with`` block, opens the store
read-only where the store allows it, and raises :class:`StoreError` (one line, never a
password) when the store cannot be read; a SQLite path without a file raises
:class:`FileNotFoundError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from typing_extensions import Self

    from spanlytics.record import RequestRecord

__all__ = [
    "ALL_TIME",
    "GROUPS",
    "ConsumerRollupRow",
    "EndpointRollupRow",
    "GroupRow",
    "LogRow",
    "Pruned",
    "RawRow",
    "RequestFilter",
    "SeriesRow",
    "StoreError",
    "StoreReader",
    "window_parts",
]

EndpointRollupRow = tuple[
    str, "str | None", int, int, int, int, float, int, int, int, int, "str | Mapping[str, int]"
]
"""method, route (None: unmatched), status class, count, errors, server_errors,
duration_ms_sum, request_size_sum, request_size_n, response_size_sum, response_size_n, hist
(JSON text or the mapping the driver decoded; :func:`~spanlytics.destinations.rollups.parse_hist`)."""
ConsumerRollupRow = tuple[
    "str | None", int, int, int, int, float, int, int, int, int, "str | Mapping[str, int]"
]
"""consumer_id (None: no consumer), status class, then the tally columns as for endpoints."""
RawRow = tuple[str, "str | None", "str | None", "int | None", float, "int | None", "int | None"]
"""method, route, consumer_id, status, duration_ms, request_size, response_size"""
SeriesRow = tuple[int, int, int, int, int, float, int, int, int, int, "str | Mapping[str, int]"]
"""bucket (the minute, or the hour with ``per_hour``), status class, then the tally columns."""
LogRow = tuple[
    str, int, str, "str | None", str, "int | None", float, "str | None", "str | None", "str | None"
]
"""id, start_time_ns, method, route, path, status, duration_ms, consumer_id, consumer_name,
exception_type: one line of the request log."""
GroupRow = tuple["str | int | None", "str | None", int, int, int, float, float]
"""key, second key (the route when grouped by endpoint, else None), count, errors (>= 400),
server_errors (>= 500 or none), duration_ms_sum, duration_ms_max."""
GROUPS = {"endpoint": ("method", "route"), "consumer": ("consumer_id",), "status": ("status",)}
"""What :meth:`StoreReader.request_groups` can group by, and the columns of each key."""


@dataclass(frozen=True)
class RequestFilter:
    """Which request records to read (every field None: all of them).

    ``route`` and ``consumer_id`` equal to ``""`` (:data:`~spanlytics.destinations.rollups.NONE`,
    as in the rollup keys) ask for the requests that matched no route or had no consumer.
    ``status_class`` is 1 to 5, or 0 for no response; ``failed`` keeps server errors and
    requests without a response; ``path_contains`` is a case-sensitive substring.
    """

    since_ns: int | None = None
    until_ns: int | None = None
    method: str | None = None
    route: str | None = None
    status: int | None = None
    status_class: int | None = None
    consumer_id: str | None = None
    min_duration_ms: float | None = None
    path_contains: str | None = None
    failed: bool = False

    def bounds(self, before: tuple[int, str] | None = None) -> tuple[int, int]:
        """The window as ``[since, until)`` nanoseconds (an open side: the whole int64 range),
        ended at the cursor ``before`` when given: ``(ns, id)`` keeps the records that started
        at ``ns`` (some come before it), ``(ns, "")`` none of them (every id sorts after "")."""
        since = -(2**63) if self.since_ns is None else self.since_ns
        until = 2**63 - 1 if self.until_ns is None else self.until_ns
        if before is not None:
            until = min(until, before[0] + (before[1] != ""))
        return since, until

    def clauses(self, mark: str, contains: str) -> tuple[list[str], list[object]]:
        """SQL conditions (joined by AND) and their parameters, with ``mark`` as each
        parameter's placeholder and ``contains`` the template of a substring test of ``path``
        (``"instr(path, {}) > 0"``)."""
        sql: list[str] = []
        params: list[object] = []

        def add(condition: str, *values: object) -> None:
            sql.append(condition.format(*([mark] * len(values))))
            params.extend(values)

        if self.since_ns is not None:
            add("start_time_ns >= {}", self.since_ns)
        if self.until_ns is not None:
            add("start_time_ns < {}", self.until_ns)
        if self.method is not None:
            add("method = {}", self.method)
        for column, value in (("route", self.route), ("consumer_id", self.consumer_id)):
            if value == "":
                add(f"{column} IS NULL")
            elif value is not None:
                add(f"{column} = {{}}", value)
        if self.status is not None:
            add("status = {}", self.status)
        if self.status_class == 0:
            add("status IS NULL")
        elif self.status_class is not None:
            add("status >= {} AND status < {}", self.status_class * 100, self.status_class * 100 + 100)
        if self.failed:
            add("(status IS NULL OR status >= 500)")
        if self.min_duration_ms is not None:
            add("duration_ms >= {}", self.min_duration_ms)
        if self.path_contains:
            add(contains, self.path_contains)
        return sql, params


ALL_TIME = -60 * 2**40
"""A ``from_minute`` before any record (a multiple of 60: no partial first hour)."""


def window_parts(from_minute: int, until_minute: int | None) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """How to read the minutes ``[from_minute, until_minute)`` (None: no end) from rollups:
    the minute ranges at its edges that fill no whole hour, and the range of whole hours."""
    first_hour = -(-from_minute // 60)
    if until_minute is None:
        last_hour = 2**62
    else:
        last_hour = until_minute // 60
        if last_hour <= first_hour:  # no whole hour inside: minutes alone
            return [(from_minute, until_minute)] if from_minute < until_minute else [], (0, 0)
    minutes = [(from_minute, first_hour * 60)] if from_minute < first_hour * 60 else []
    if until_minute is not None and last_hour * 60 < until_minute:
        minutes.append((last_hour * 60, until_minute))
    return minutes, (first_hour, last_hour)


class StoreError(Exception):
    """A store that cannot be read or written: the message is one line for a person, and
    never holds a password."""


class StoreReader(Protocol):
    """A read-only snapshot of one store (see the module docstring).

    Rollup rows are per minute (``minute`` = ``start_time_ns // 60e9``), added up per key over
    ``[from_minute, until_minute)``; ``from_minute`` None means all time, ``until_minute``
    None no end. ``raw_rows`` reads request records started in ``[since_ns, until_ns)``,
    for the part of a window that does not fill a whole minute. ``top`` asks for the
    histograms of the ``top`` endpoints (method and route) or consumers with the most
    requests only (ties broken by key, in code point order): a store may then leave the
    others' histograms empty, which spares most of the work of a page that shows a top ten.
    """

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def endpoint_rollups(
        self, from_minute: int | None, until_minute: int | None = None, *, top: int | None = None
    ) -> Iterable[EndpointRollupRow]: ...

    def consumer_rollups(
        self, from_minute: int | None, until_minute: int | None = None, *, top: int | None = None
    ) -> Iterable[ConsumerRollupRow]: ...

    def consumer_labels(self) -> Iterable[tuple[str, str | None, str | None]]:
        """(consumer_id, name, group): the latest non-null name and group seen per consumer."""

    def raw_rows(self, since_ns: int, until_ns: int) -> Iterable[RawRow]: ...

    def records(self, since_ns: int | None = None) -> Iterator[RequestRecord]:
        """The stored records, oldest first (``since_ns``: started then or later)."""

    # What the dashboard reads besides.

    def endpoint_series(
        self,
        from_minute: int,
        until_minute: int,
        *,
        per_hour: bool = False,
        endpoint: tuple[str, str | None] | None = None,
    ) -> Iterable[SeriesRow]:
        """The requests of every endpoint (or of ``endpoint``, (method, route)) per minute or
        per hour and status class, in ``[from_minute, until_minute)``; per hour, the hours that
        hold the window's edges count whole. Ordered by bucket."""

    def consumer_series(
        self, from_minute: int, until_minute: int, consumer_id: str | None, *, per_hour: bool = False
    ) -> Iterable[SeriesRow]:
        """As :meth:`endpoint_series`, for one consumer (None: the requests without one)."""

    def request_groups(
        self, by: str, where: RequestFilter, limit: int = 100, sample: int | None = None
    ) -> Iterable[GroupRow]:
        """The records ``where`` selects, added up per ``by`` (a key of :data:`GROUPS`), the
        ``limit`` groups with the most requests, most first. Read from the records, not the
        rollups: ``sample`` bounds the read to the newest ``sample`` records of the window
        (those the other filters select among them are added up)."""

    def request_page(
        self,
        where: RequestFilter,
        limit: int,
        before: tuple[int, str] | None = None,
        *,
        slowest: bool = False,
        sample: int | None = None,
    ) -> list[LogRow]:
        """Up to ``limit`` records ``where`` selects, newest first, from the one before
        ``before`` (the (start_time_ns, id) of the last row of the previous page: keyset
        pagination, no OFFSET); ``slowest`` orders by duration instead (one page only, among
        the newest ``sample`` records of the window when given)."""

    def scan_floor(
        self, where: RequestFilter, scan: int, before: tuple[int, str] | None = None
    ) -> int | None:
        """The start time of the ``scan``-th newest record of ``where``'s window (from
        ``before`` on, that record included), read from the start-time index alone; None when
        fewer remain. A page whose filter matches little reads down to it only (``since_ns``
        raised to it): a bounded read, and where to go on searching."""

    def record(self, record_id: str) -> RequestRecord | None:
        """The stored record with this id, None when there is none (any more)."""


@dataclass(frozen=True)
class Pruned:
    """What one prune removed."""

    records: int
    rollup_rows: int

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(self.records + other.records, self.rollup_rows + other.rollup_rows)
