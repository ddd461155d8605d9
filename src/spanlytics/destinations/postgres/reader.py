"""Reading the PostgreSQL store: :class:`PostgresReader`, the
:class:`~spanlytics.destinations.stores.StoreReader` of a ``postgresql://`` URL.

Its ``with`` block is one ``READ ONLY``, ``REPEATABLE READ`` transaction: every query sees
one snapshot, and the reader can write nothing. Rollup rows come summed per key over the
minutes asked for (the histograms merged in SQL), so the report reads a row per endpoint
and status class, not one per minute: whole hours from the hour tables, the minutes of a
window's first, partial hour from the minute tables (all time: the hours alone).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from spanlytics.destinations.local.schema import from_row
from spanlytics.destinations.postgres.connect import MISSING_DRIVER, connect, describe_error
from spanlytics.destinations.postgres.options import redact_url, url_problem
from spanlytics.destinations.postgres.rows import COLUMNS
from spanlytics.destinations.postgres.schema import SchemaError, schema_version
from spanlytics.destinations.rollups import NONE, TALLY_COLUMNS, key_value
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
    StoreError,
    window_parts,
)

if TYPE_CHECKING:
    import psycopg

    from spanlytics.record import RequestRecord

__all__ = ["PostgresReader"]

_MIN = -(2**63)
_TYPES = ("bigint", "bigint", "bigint", "float8", "bigint", "bigint", "bigint", "bigint")
_SUM_NAMES = ", ".join(TALLY_COLUMNS[:-1])
_SUMS = ", ".join(f"sum({c})::{t} AS {c}" for c, t in zip(TALLY_COLUMNS[:-1], _TYPES, strict=True))
_COLUMNS = ", ".join(TALLY_COLUMNS)


def _rollup_query(kind: str, keys: str, group: str, top: bool = False) -> str:
    # the minutes of the window's first, partial hour, then its whole hours; sums per key, and
    # each key's histograms summed bucket by bucket (a small aggregate per key: measured 2-3x
    # faster than grouping every bucket of every row by key and bucket). With ``top``, only
    # the %(top)s groups (endpoints, consumers) with the most requests get their histograms:
    # the rest of the work is a tenth of it.
    hist = """coalesce((SELECT jsonb_object_agg(s.key, s.n) FROM (
    SELECT b.key, sum(b.value::bigint) AS n FROM unnest(k.hists) AS h, jsonb_each_text(h) AS b
    GROUP BY b.key) AS s), '{}'::jsonb)"""
    if top:
        order = ", ".join(f'{c} COLLATE "C"' for c in group.split(", "))
        ranked = f"""r AS (SELECT *, dense_rank() OVER (ORDER BY total DESC, {order}) AS place FROM (
    SELECT *, sum(count) OVER (PARTITION BY {group}) AS total FROM k) AS t)"""
        select = f"CASE WHEN place <= %(top)s THEN {hist} ELSE '{{}}'::jsonb END"
        source = "r AS k"
    else:
        ranked, select, source = "", hist, "k"
    return f"""WITH m AS (
    SELECT {keys}, {_COLUMNS} FROM {kind}_minutes
        WHERE minute >= %(from)s AND minute < %(until)s OR minute >= %(from2)s AND minute < %(until2)s
    UNION ALL SELECT {keys}, {_COLUMNS} FROM {kind}_hours WHERE hour >= %(hour)s AND hour < %(hour_end)s),
k AS (SELECT {keys}, {_SUMS}, array_agg(hist) AS hists FROM m GROUP BY {keys}){"," if ranked else ""}
{ranked}
SELECT {keys}, {_SUM_NAMES}, {select}
FROM {source} ORDER BY {keys}"""


def _window(from_minute: int | None, until_minute: int | None = None) -> dict[str, int]:
    """The query's parameters: the minutes of the partial hours at the window's edges, and
    its whole hours (all time: the hours alone)."""
    minutes, (first_hour, last_hour) = window_parts(
        ALL_TIME if from_minute is None else from_minute, until_minute
    )
    minutes += [(0, 0)] * (2 - len(minutes))
    (start, end), (start2, end2) = minutes
    return {
        "from": start,
        "until": end,
        "from2": start2,
        "until2": end2,
        "hour": first_hour,
        "hour_end": last_hour,
    }


def _series_query(kind: str, unit: str, where: str) -> str:
    """Per bucket and status class, each bucket's histograms summed as in :func:`_rollup_query`."""
    return f"""WITH k AS (SELECT {unit} AS bucket, status_class, {_SUMS}, array_agg(hist) AS hists
    FROM {kind}_{unit}s WHERE {unit} >= %(start)s AND {unit} < %(end)s{where}
    GROUP BY {unit}, status_class)
SELECT bucket, status_class, {_SUM_NAMES}, coalesce((SELECT jsonb_object_agg(s.key, s.n) FROM (
    SELECT b.key, sum(b.value::bigint) AS n FROM unnest(k.hists) AS h, jsonb_each_text(h) AS b
    GROUP BY b.key) AS s), '{{}}'::jsonb)
FROM k ORDER BY bucket, status_class"""


_CONTAINS = "strpos(path, {}) > 0"
_LOG = (
    "id, start_time_ns, method, route, path, status, duration_ms, consumer_id, consumer_name, exception_type"
)


def _where(conditions: list[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _source(where: RequestFilter, sample: int | None) -> tuple[str, tuple[int, ...]]:
    """The rows to read: the requests table, or its newest ``sample`` rows in the window."""
    if sample is None:
        return "requests", ()
    since, until = where.bounds()
    inner = (
        f"(SELECT {_LOG} FROM requests WHERE start_time_ns >= %s AND start_time_ns < %s "
        "ORDER BY start_time_ns DESC, id DESC LIMIT %s) AS sample"
    )
    return inner, (since, until, sample)


_ENDPOINTS = _rollup_query("endpoint", "method, route, status_class", "method, route")
_CONSUMERS = _rollup_query("consumer", "consumer_id, status_class", "consumer_id")
_TOP_ENDPOINTS = _rollup_query("endpoint", "method, route, status_class", "method, route", top=True)
_TOP_CONSUMERS = _rollup_query("consumer", "consumer_id, status_class", "consumer_id", top=True)


class PostgresReader:
    """One read-only snapshot of a PostgreSQL store::

        with PostgresReader("postgresql://app@db/api") as reader:
            rows = list(reader.endpoint_rollups(from_minute=None))

    Opening raises :class:`~spanlytics.destinations.stores.StoreError` (one line, the
    password masked) when the server cannot be reached, refuses the credentials, or the
    database holds no spanlytics store.
    """

    def __init__(self, url: str, *, _snapshot: str | None = None) -> None:
        self._snapshot = _snapshot
        self.shown = redact_url(url)
        problem = url_problem(url)
        if problem is not None:
            raise StoreError(problem)
        try:
            import psycopg
        except ImportError:
            raise StoreError(MISSING_DRIVER) from None
        try:
            conn = connect(url)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read {self.shown}: {describe_error(exc, url)}") from None
        try:
            with conn.transaction():
                version = schema_version(conn)
        except SchemaError as exc:
            conn.close()
            raise StoreError(f"{self.shown} is not a spanlytics store: {exc}") from None
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot read {self.shown}: {describe_error(exc, url)}") from None
        if version is None:
            conn.close()
            raise StoreError(f"{self.shown} holds no spanlytics store (nothing has been recorded there yet?)")
        self._url = url
        self._conn: psycopg.Connection[tuple[Any, ...]] = conn
        self._psycopg_error = psycopg.Error

    def __repr__(self) -> str:
        return f"PostgresReader({self.shown!r})"

    def __enter__(self) -> PostgresReader:
        from psycopg import sql

        try:
            self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if self._snapshot is not None:
                self._conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self._snapshot)))
        except self._psycopg_error as exc:
            self._conn.close()
            raise StoreError(f"cannot read {self.shown}: {describe_error(exc, self._url)}") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if not self._conn.closed:
                self._conn.execute("ROLLBACK")
        except self._psycopg_error:
            pass
        finally:
            self._conn.close()

    def fork(self) -> PostgresReader:
        """Another reader, on its own connection, that sees this one's snapshot: to read in
        parallel (a page's charts while its tables are added up). Enter it while this
        reader's ``with`` block is open."""
        ((snapshot,),) = self._rows("SELECT pg_export_snapshot()", ())
        return PostgresReader(self._url, _snapshot=str(snapshot))

    def _rows(self, sql: str, params: dict[str, Any] | tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except self._psycopg_error as exc:
            raise StoreError(f"cannot read {self.shown}: {describe_error(exc, self._url)}") from None

    def endpoint_rollups(
        self, from_minute: int | None, until_minute: int | None = None, *, top: int | None = None
    ) -> Iterable[EndpointRollupRow]:
        query = _ENDPOINTS if top is None else _TOP_ENDPOINTS
        rows = self._rows(query, {**_window(from_minute, until_minute), "top": top})
        return [(r[0], key_value(r[1]), *r[2:]) for r in rows]

    def consumer_rollups(
        self, from_minute: int | None, until_minute: int | None = None, *, top: int | None = None
    ) -> Iterable[ConsumerRollupRow]:
        query = _CONSUMERS if top is None else _TOP_CONSUMERS
        rows = self._rows(query, {**_window(from_minute, until_minute), "top": top})
        return [(key_value(r[0]), *r[1:]) for r in rows]

    def consumer_labels(self) -> Iterable[tuple[str, str | None, str | None]]:
        rows = self._rows("SELECT consumer_id, name, group_name FROM consumers ORDER BY consumer_id", ())
        return [(r[0], r[1], r[2]) for r in rows]

    def raw_rows(self, since_ns: int, until_ns: int) -> Iterable[RawRow]:
        rows = self._rows(
            "SELECT method, route, consumer_id, status, duration_ms, request_size, response_size "
            "FROM requests WHERE start_time_ns >= %s AND start_time_ns < %s",
            (since_ns, until_ns),
        )
        return [tuple(r) for r in rows]

    def records(self, since_ns: int | None = None) -> Iterator[RequestRecord]:
        """The stored records, oldest first, streamed by a server-side cursor."""
        cursor = self._conn.cursor(name="spanlytics_records")
        try:
            cursor.execute(
                f"SELECT {', '.join(COLUMNS)} FROM requests WHERE start_time_ns >= %s "
                "ORDER BY start_time_ns, id",
                (_MIN if since_ns is None else since_ns,),
            )
        except self._psycopg_error as exc:
            raise StoreError(f"cannot read {self.shown}: {describe_error(exc, self._url)}") from None

        def rows() -> Iterator[RequestRecord]:
            try:
                for row in cursor:
                    yield from_row(row)
            finally:
                cursor.close()

        return rows()

    # What the dashboard reads besides.

    def _series(
        self,
        kind: str,
        from_minute: int,
        until_minute: int,
        per_hour: bool,
        where: str,
        params: dict[str, Any],
    ) -> list[SeriesRow]:
        if per_hour:
            unit, start, end = "hour", from_minute // 60, -(-until_minute // 60)
        else:
            unit, start, end = "minute", from_minute, until_minute
        sql = _series_query(kind, unit, where)
        return [tuple(r) for r in self._rows(sql, {"start": start, "end": end, **params})]

    def endpoint_series(
        self,
        from_minute: int,
        until_minute: int,
        *,
        per_hour: bool = False,
        endpoint: tuple[str, str | None] | None = None,
    ) -> list[SeriesRow]:
        if endpoint is None:
            return self._series("endpoint", from_minute, until_minute, per_hour, "", {})
        where = " AND method = %(method)s AND route = %(route)s"
        params = {"method": endpoint[0], "route": NONE if endpoint[1] is None else endpoint[1]}
        return self._series("endpoint", from_minute, until_minute, per_hour, where, params)

    def consumer_series(
        self, from_minute: int, until_minute: int, consumer_id: str | None, *, per_hour: bool = False
    ) -> list[SeriesRow]:
        params = {"consumer": NONE if consumer_id is None else consumer_id}
        where = " AND consumer_id = %(consumer)s"
        return self._series("consumer", from_minute, until_minute, per_hour, where, params)

    def request_groups(
        self, by: str, where: RequestFilter, limit: int = 100, sample: int | None = None
    ) -> list[GroupRow]:
        keys = GROUPS[by]
        conditions, params = where.clauses("%s", _CONTAINS)
        source, first = _source(where, sample)
        second = keys[1] if len(keys) > 1 else "NULL::text"
        sql = (
            f"SELECT {keys[0]}, {second}, count(*), count(*) FILTER (WHERE status >= 400), "
            "count(*) FILTER (WHERE status IS NULL OR status >= 500), "
            "coalesce(sum(duration_ms), 0)::float8, max(duration_ms) "
            f"FROM {source}{_where(conditions)} GROUP BY {', '.join(keys)} ORDER BY 3 DESC, 1, 2 LIMIT %s"
        )
        return [tuple(r) for r in self._rows(sql, (*first, *params, limit))]

    def request_page(
        self,
        where: RequestFilter,
        limit: int,
        before: tuple[int, str] | None = None,
        *,
        slowest: bool = False,
        sample: int | None = None,
    ) -> list[LogRow]:
        conditions, params = where.clauses("%s", _CONTAINS)
        if before is not None and not slowest:
            conditions.append("(start_time_ns, id) < (%s, %s)")
            params.extend(before)
        source, first = _source(where, sample if slowest else None)
        order = "duration_ms DESC, start_time_ns DESC, id DESC" if slowest else "start_time_ns DESC, id DESC"
        sql = f"SELECT {_LOG} FROM {source}{_where(conditions)} ORDER BY {order} LIMIT %s"
        return [tuple(r) for r in self._rows(sql, (*first, *params, limit))]

    def scan_floor(
        self, where: RequestFilter, scan: int, before: tuple[int, str] | None = None
    ) -> int | None:
        since, until = where.bounds(before)
        sql = (
            "SELECT min(s), count(*) FROM (SELECT start_time_ns AS s FROM requests "
            "WHERE start_time_ns >= %s AND start_time_ns < %s ORDER BY start_time_ns DESC LIMIT %s) AS t"
        )
        floor, count = self._rows(sql, (since, until, scan))[0]
        return int(floor) if count >= scan else None

    def record(self, record_id: str) -> RequestRecord | None:
        rows = self._rows(f"SELECT {', '.join(COLUMNS)} FROM requests WHERE id = %s", (record_id,))
        return from_row(rows[0]) if rows else None
