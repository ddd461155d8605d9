"""Reading a local store: read-only connections, the stored records and the rollups (the
:class:`~spanlytics.destinations.stores.StoreReader` of a SQLite file)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from spanlytics._json import loads_text
from spanlytics.destinations.local.rollup_sql import tally_rows
from spanlytics.destinations.local.schema import (
    COLUMNS,
    DEFAULT_BUSY_TIMEOUT_S,
    ROLLUP_VERSION,
    SchemaError,
    from_row,
    user_version,
)
from spanlytics.destinations.rollups import (
    MINUTE_NS,
    NONE,
    TALLY_COLUMNS,
    Rollups,
    Tally,
    hist_json,
    key_value,
    parse_hist,
)
from spanlytics.destinations.stores import (
    ALL_TIME,
    GROUPS,
    ConsumerRollupRow,
    EndpointRollupRow,
    GroupRow,
    LogRow,
    RawRow,
    RequestFilter,
    SeriesRow,
    window_parts,
)
from spanlytics.record import RequestRecord

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM requests"
_MIN_NS = -(2**63)
_MAX_NS = 2**63 - 1


def connect_for_reading(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open a spanlytics database read-only (never creates a file).

    Raises :class:`FileNotFoundError` when there is no file and :class:`SchemaError` when the
    file is not a spanlytics database (or no SQLite file at all). Readers do not block
    writers in WAL mode.
    """
    file = Path(os.path.expanduser(os.fspath(path)))
    if not file.is_file():
        raise FileNotFoundError(f"no spanlytics database at {file} (nothing has been recorded there yet?)")
    conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, timeout=DEFAULT_BUSY_TIMEOUT_S)
    try:
        if user_version(conn) == 0:
            raise SchemaError(f"{file} is not a spanlytics database (no schema version)")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise SchemaError(f"{file} is not a spanlytics database ({exc})") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def iter_records(path: str | os.PathLike[str], since_ns: int | None = None) -> Iterator[RequestRecord]:
    """Yield the stored records, oldest first, optionally only those started at ``since_ns`` or later.

    The file is opened (and a missing one reported) at call time, not on first iteration.
    """
    conn = connect_for_reading(path)

    def rows() -> Iterator[RequestRecord]:
        try:
            cursor = conn.execute(
                f"{_SELECT} WHERE start_time_ns >= ? ORDER BY start_time_ns, rowid",
                (_MIN_NS if since_ns is None else since_ns,),
            )
            for row in cursor:
                yield from_row(row)
        finally:
            conn.close()

    return rows()


_TALLY_SUMS = ", ".join(f"sum({c})" for c in TALLY_COLUMNS if c != "hist")
_RAW = "method, route, consumer_id, status, duration_ms, request_size, response_size"
_LABEL_ROWS = (
    "SELECT start_time_ns, method, route, status, duration_ms, request_size, response_size, "
    "consumer_id, consumer_name, consumer_group FROM requests WHERE start_time_ns >= ? AND start_time_ns < ?"
)


class _HistSum:
    """The SQL aggregate ``spanlytics_hist_sum(hist)``: histograms of a group added up (the
    bucket keys stay text until the end: converting each row's keys was most of the cost of
    a day's rollups)."""

    def __init__(self) -> None:
        self.hist: dict[str, int] = {}

    def step(self, value: Any, /) -> None:
        if value:
            hist = self.hist
            for bucket, count in loads_text(value).items():
                hist[bucket] = hist.get(bucket, 0) + count

    def finalize(self) -> str:
        return hist_json({int(k): v for k, v in self.hist.items()})


def _rows(tallies: Mapping[tuple[Any, ...], Tally]) -> list[Any]:
    """Tallies as reader rows: the key (None for NONE in text keys) then the tally columns."""
    return [
        (*(key_value(v) if isinstance(v, str) else v for v in k), *t.columns())
        for k, t in sorted(tallies.items(), key=lambda item: tuple(map(str, item[0])))
    ]


def _without_minutes(tallies: Mapping[tuple[Any, ...], Tally]) -> dict[tuple[Any, ...], Tally]:
    summed: dict[tuple[Any, ...], Tally] = {}
    for key, tally in tallies.items():
        into = summed.get(key[1:])
        if into is None:
            into = summed[key[1:]] = Tally()
        into.merge(tally)
    return summed


class LocalReader:
    """One read-only snapshot of a local store, the :class:`~spanlytics.destinations.stores.StoreReader`
    of a SQLite file::

        with LocalReader("./spanlytics.db") as reader:
            for method, route, status_class, count, *rest in reader.endpoint_rollups(None):
                ...

    Opening raises :class:`FileNotFoundError` or :class:`SchemaError` as
    :func:`connect_for_reading` does. Every query of one ``with`` block sees the same snapshot.

    Rollup rows come added up per key over the window (the protocol's row has no minute):
    whole hours from the hour tables, the minutes of a window's first, partial hour from the
    minute tables. A file of schema version 1 (no rollups yet: its app runs an older
    spanlytics, and readers never migrate a file) is read by adding up its records instead:
    the same rows, only slower.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._conn = connect_for_reading(path)
        self._rollups = user_version(self._conn) >= ROLLUP_VERSION
        self._computed: dict[tuple[int | None, int | None], Rollups] = {}
        self._conn.create_aggregate("spanlytics_hist_sum", 1, _HistSum)  # type: ignore[arg-type]  # typeshed: finalize -> int

    def __enter__(self) -> LocalReader:
        self._conn.execute("BEGIN")  # one read transaction: every query sees the same snapshot
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._conn.rollback()
        finally:
            self._conn.close()

    def _from_records(self, from_minute: int | None, until_minute: int | None = None) -> Rollups:
        """A version-1 file's rollups, added up from its records."""
        key = (from_minute, until_minute)
        if key not in self._computed:
            rollups = Rollups()
            since = _MIN_NS if from_minute is None else from_minute * MINUTE_NS
            until = _MAX_NS if until_minute is None else until_minute * MINUTE_NS
            tally_rows(self._conn.execute(_LABEL_ROWS, (since, until)), rollups)
            self._computed[key] = rollups
        return self._computed[key]

    def _summed(
        self, kind: str, keys: str, from_minute: int | None, until_minute: int | None
    ) -> list[tuple[Any, ...]]:
        """``kind`` (endpoint, consumer) rollups added up per key over the window: whole hours
        from the hour tables, the minutes of partial hours at its edges from the minutes."""
        queries: list[tuple[str, tuple[int, ...]]] = []
        select = f"SELECT {keys}, {_TALLY_SUMS}, spanlytics_hist_sum(hist) FROM {kind}"
        minutes, (first_hour, last_hour) = window_parts(
            ALL_TIME if from_minute is None else from_minute, until_minute
        )
        for start, end in minutes:
            queries.append(
                (f"{select}_minutes WHERE minute >= ? AND minute < ? GROUP BY {keys}", (start, end))
            )
        if first_hour < last_hour:
            queries.append(
                (f"{select}_hours WHERE hour >= ? GROUP BY {keys}", (first_hour,))
                if until_minute is None
                else (f"{select}_hours WHERE hour >= ? AND hour < ? GROUP BY {keys}", (first_hour, last_hour))
            )
        width = keys.count(",") + 1
        tallies: dict[tuple[Any, ...], Tally] = {}
        for sql, params in queries:
            for row in self._conn.execute(sql, params):
                key = row[:width]
                tally = Tally(*row[width:-1])
                tally.hist = parse_hist(row[-1])
                if key in tallies:
                    tallies[key].merge(tally)
                else:
                    tallies[key] = tally
        return _rows(tallies)

    def endpoint_rollups(
        self, from_minute: int | None, until_minute: int | None = None, *, top: int | None = None
    ) -> list[EndpointRollupRow]:
        """(method, route, status class, tally columns...) per endpoint and status class."""
        if not self._rollups:
            computed = self._from_records(from_minute, until_minute)
            return _rows(_without_minutes(computed.endpoints))
        return self._summed("endpoint", "method, route, status_class", from_minute, until_minute)

    def consumer_rollups(
        self, from_minute: int | None, until_minute: int | None = None, *, top: int | None = None
    ) -> list[ConsumerRollupRow]:
        """(consumer id, status class, tally columns...) per consumer and status class."""
        if not self._rollups:
            computed = self._from_records(from_minute, until_minute)
            return _rows(_without_minutes(computed.consumers))
        return self._summed("consumer", "consumer_id, status_class", from_minute, until_minute)

    def consumer_labels(self) -> list[tuple[str, str | None, str | None]]:
        """(consumer id, name, group): the latest non-null name and group per consumer."""
        if not self._rollups:
            labels = self._from_records(None, None).labels
            return [(cid, name, group) for cid, (name, group, _) in sorted(labels.items())]
        return list(self._conn.execute("SELECT consumer_id, name, group_name FROM consumers"))

    def raw_rows(self, since_ns: int, until_ns: int) -> Iterator[RawRow]:
        """The records started in ``[since_ns, until_ns)``, through the start-time index."""
        sql = f"SELECT {_RAW} FROM requests WHERE start_time_ns >= ? AND start_time_ns < ?"
        return iter(self._conn.execute(sql, (since_ns, until_ns)))

    def records(self, since_ns: int | None = None) -> Iterator[RequestRecord]:
        """The stored records, oldest first (``since_ns``: started then or later)."""
        cursor = self._conn.execute(
            f"{_SELECT} WHERE start_time_ns >= ? ORDER BY start_time_ns, rowid",
            (_MIN_NS if since_ns is None else since_ns,),
        )
        return (from_row(row) for row in cursor)

    # What the dashboard reads besides.

    def _series(
        self, kind: str, from_minute: int, until_minute: int, per_hour: bool, where: str, params: list[Any]
    ) -> list[SeriesRow]:
        if not self._rollups:
            return self._series_from_records(kind, from_minute, until_minute, per_hour, where, params)
        unit, start, end = ("hour", from_minute // 60, -(-until_minute // 60)) if per_hour else (
            "minute", from_minute, until_minute)  # fmt: skip
        table = f"{kind}_{unit}s"
        sql = (
            f"SELECT {unit}, status_class, {_TALLY_SUMS}, spanlytics_hist_sum(hist) FROM {table} "
            f"WHERE {unit} >= ? AND {unit} < ?{where} "
            f"GROUP BY {unit}, status_class ORDER BY {unit}, status_class"
        )
        return list(self._conn.execute(sql, (start, end, *params)))

    def _series_from_records(
        self, kind: str, from_minute: int, until_minute: int, per_hour: bool, where: str, params: list[Any]
    ) -> list[SeriesRow]:
        """A version-1 file's series, added up from its records."""
        if per_hour:
            from_minute, until_minute = from_minute // 60 * 60, -(-until_minute // 60) * 60
        # the records hold NULL where the rollup keys hold NONE
        where = where.replace("route = ?", "coalesce(route, '') = ?").replace(
            "consumer_id = ?", "coalesce(consumer_id, '') = ?"
        )
        rows = self._conn.execute(
            f"{_LABEL_ROWS}{where}", (from_minute * MINUTE_NS, until_minute * MINUTE_NS, *params)
        )
        rollups = Rollups()
        tally_rows(rows, rollups)
        buckets: dict[tuple[int, int], Tally] = {}
        for key, tally in (rollups.endpoints if kind == "endpoint" else rollups.consumers).items():
            bucket = (key[0] // 60 if per_hour else key[0], key[-1])
            buckets.setdefault(bucket, Tally()).merge(tally)
        return [(*k, *t.columns()) for k, t in sorted(buckets.items())]

    def endpoint_series(
        self,
        from_minute: int,
        until_minute: int,
        *,
        per_hour: bool = False,
        endpoint: tuple[str, str | None] | None = None,
    ) -> list[SeriesRow]:
        if endpoint is None:
            return self._series("endpoint", from_minute, until_minute, per_hour, "", [])
        method, route = endpoint
        params: list[Any] = [method, NONE if route is None else route]
        return self._series(
            "endpoint", from_minute, until_minute, per_hour, " AND method = ? AND route = ?", params
        )

    def consumer_series(
        self, from_minute: int, until_minute: int, consumer_id: str | None, *, per_hour: bool = False
    ) -> list[SeriesRow]:
        params: list[Any] = [NONE if consumer_id is None else consumer_id]
        return self._series("consumer", from_minute, until_minute, per_hour, " AND consumer_id = ?", params)

    def request_groups(
        self, by: str, where: RequestFilter, limit: int = 100, sample: int | None = None
    ) -> list[GroupRow]:
        keys = GROUPS[by]
        conditions, params = where.clauses("?", _CONTAINS)
        source, first = _source(where, sample)
        second = keys[1] if len(keys) > 1 else "NULL"
        sql = (
            f"SELECT {keys[0]}, {second}, count(*), coalesce(sum(status >= 400), 0), "
            "coalesce(sum(status IS NULL OR status >= 500), 0), total(duration_ms), max(duration_ms) "
            f"FROM {source}{_where(conditions)} GROUP BY {', '.join(keys)} ORDER BY 3 DESC, 1, 2 LIMIT ?"
        )
        return list(self._conn.execute(sql, (*first, *params, limit)))

    def request_page(
        self,
        where: RequestFilter,
        limit: int,
        before: tuple[int, str] | None = None,
        *,
        slowest: bool = False,
        sample: int | None = None,
    ) -> list[LogRow]:
        conditions, params = where.clauses("?", _CONTAINS)
        if before is not None and not slowest:
            conditions.append("(start_time_ns, id) < (?, ?)")
            params.extend(before)
        if slowest:
            source, first = _source(where, sample)
        else:  # newest first: down the start-time index, until the page is full
            source, first = "requests INDEXED BY requests_start_time", ()
        order = "duration_ms DESC, start_time_ns DESC, id DESC" if slowest else "start_time_ns DESC, id DESC"
        sql = f"SELECT {_LOG} FROM {source}{_where(conditions)} ORDER BY {order} LIMIT ?"
        return list(self._conn.execute(sql, (*first, *params, limit)))

    def scan_floor(
        self, where: RequestFilter, scan: int, before: tuple[int, str] | None = None
    ) -> int | None:
        # the start-time index alone (no row is read): a few ms for 50,000 entries
        since, until = where.bounds(before)
        sql = (
            "SELECT min(s), count(*) FROM (SELECT start_time_ns AS s FROM requests INDEXED BY "
            "requests_start_time WHERE start_time_ns >= ? AND start_time_ns < ? "
            "ORDER BY start_time_ns DESC LIMIT ?)"
        )
        floor, count = self._conn.execute(sql, (since, until, scan)).fetchone()
        return int(floor) if count >= scan else None

    def record(self, record_id: str) -> RequestRecord | None:
        row = self._conn.execute(f"{_SELECT} WHERE id = ?", (record_id,)).fetchone()
        return None if row is None else from_row(row)


_CONTAINS = "instr(path, {}) > 0"
_LOG = (
    "id, start_time_ns, method, route, path, status, duration_ms, consumer_id, consumer_name, exception_type"
)


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _source(where: RequestFilter, sample: int | None) -> tuple[str, tuple[int, ...]]:
    """The rows to read: the requests table, or its newest ``sample`` rows in the window
    (down the start-time index: a bounded read whatever the other filters)."""
    if sample is None:
        return "requests", ()
    since, until = where.bounds()
    inner = (
        f"(SELECT {_LOG} FROM requests INDEXED BY requests_start_time WHERE start_time_ns >= ? "
        "AND start_time_ns < ? ORDER BY start_time_ns DESC, id DESC LIMIT ?)"
    )
    return inner, (since, until, sample)
