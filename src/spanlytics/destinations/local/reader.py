"""Reading a local store: read-only connections and the stored records, for the report and tests."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from spanlytics.destinations.local.queries import consumers_query, endpoints_query
from spanlytics.destinations.local.schema import (
    COLUMNS,
    DEFAULT_BUSY_TIMEOUT_S,
    SchemaError,
    from_row,
    user_version,
)
from spanlytics.record import RequestRecord

EndpointRow = tuple[str, "str | None", float, "int | None", "int | None", "int | None"]
"""method, route, duration_ms, status, request_size, response_size"""
ConsumerRow = tuple["str | None", "str | None", "str | None", "int | None"]
"""consumer_id, consumer_name, consumer_group, status"""

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM requests"
_MIN_NS = -(2**63)


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


class LocalReader:
    """One read-only snapshot of a local store: what the report reads, and nothing else::

        with LocalReader("./spanlytics.db") as reader:
            for method, route, duration_ms, status, req_size, resp_size in reader.endpoint_rows(None):
                ...

    Opening raises :class:`FileNotFoundError` or :class:`SchemaError` as
    :func:`connect_for_reading` does. Every query of one ``with`` block sees the same snapshot.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._conn = connect_for_reading(path)

    def __enter__(self) -> LocalReader:
        self._conn.execute("BEGIN")  # one read transaction: every query sees the same snapshot
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._conn.rollback()
        finally:
            self._conn.close()

    def endpoint_rows(self, since_ns: int | None) -> Iterator[EndpointRow]:
        """Rows grouped by (method, route), fastest first; all time when ``since_ns`` is None."""
        return iter(self._conn.execute(*endpoints_query(since_ns)))

    def consumer_rows(self, since_ns: int | None) -> Iterator[ConsumerRow]:
        """Rows grouped by consumer id, oldest first; all time when ``since_ns`` is None."""
        return iter(self._conn.execute(*consumers_query(since_ns)))
