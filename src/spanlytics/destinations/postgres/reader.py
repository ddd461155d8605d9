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
from spanlytics.destinations.rollups import TALLY_COLUMNS, key_value
from spanlytics.destinations.stores import (
    ConsumerRollupRow,
    EndpointRollupRow,
    RawRow,
    StoreError,
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


def _rollup_query(kind: str, keys: str) -> str:
    # the minutes of the window's first, partial hour, then its whole hours; sums per key, and
    # each key's histograms summed bucket by bucket (a small aggregate per key: measured 2-3x
    # faster than grouping every bucket of every row by key and bucket)
    return f"""WITH m AS (
    SELECT {keys}, {_COLUMNS} FROM {kind}_minutes WHERE minute >= %(from)s AND minute < %(until)s
    UNION ALL SELECT {keys}, {_COLUMNS} FROM {kind}_hours WHERE hour >= %(hour)s),
k AS (SELECT {keys}, {_SUMS}, array_agg(hist) AS hists FROM m GROUP BY {keys})
SELECT {keys}, {_SUM_NAMES}, coalesce((SELECT jsonb_object_agg(s.key, s.n) FROM (
    SELECT b.key, sum(b.value::bigint) AS n FROM unnest(k.hists) AS h, jsonb_each_text(h) AS b
    GROUP BY b.key) AS s), '{{}}'::jsonb)
FROM k ORDER BY {keys}"""


def _window(from_minute: int | None) -> dict[str, int]:
    """The query's parameters: all time is the hours alone; a window starting mid-hour reads
    the minutes up to its first whole hour, then the hours from there on."""
    if from_minute is None:
        return {"from": 0, "until": 0, "hour": _MIN}
    first_hour = -(-from_minute // 60)
    return {"from": from_minute, "until": first_hour * 60, "hour": first_hour}


_ENDPOINTS = _rollup_query("endpoint", "method, route, status_class")
_CONSUMERS = _rollup_query("consumer", "consumer_id, status_class")


class PostgresReader:
    """One read-only snapshot of a PostgreSQL store::

        with PostgresReader("postgresql://app@db/api") as reader:
            rows = list(reader.endpoint_rollups(from_minute=None))

    Opening raises :class:`~spanlytics.destinations.stores.StoreError` (one line, the
    password masked) when the server cannot be reached, refuses the credentials, or the
    database holds no spanlytics store.
    """

    def __init__(self, url: str) -> None:
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
        try:
            self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
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

    def _rows(self, sql: str, params: dict[str, Any] | tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except self._psycopg_error as exc:
            raise StoreError(f"cannot read {self.shown}: {describe_error(exc, self._url)}") from None

    def endpoint_rollups(self, from_minute: int | None) -> Iterable[EndpointRollupRow]:
        rows = self._rows(_ENDPOINTS, _window(from_minute))
        return [(r[0], key_value(r[1]), *r[2:]) for r in rows]

    def consumer_rollups(self, from_minute: int | None) -> Iterable[ConsumerRollupRow]:
        rows = self._rows(_CONSUMERS, _window(from_minute))
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
