"""Retention for the PostgreSQL store: delete old records and old rollup rows (minutes, and
the hours before the cutoff's hour) in small transactions, so that writers never wait long
on the pruner.

``spanlytics prune --db postgresql://... --older-than 7d`` calls :func:`prune_postgres`; every
writer calls :func:`prune_step` at most once a minute, with a time budget, and only the one
holding the prune try-lock does any work.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from spanlytics.destinations.postgres.schema import PRUNE_LOCK, SchemaError, schema_version
from spanlytics.destinations.rollups import MINUTE_NS
from spanlytics.destinations.stores import Pruned, StoreError

if TYPE_CHECKING:
    import psycopg

__all__ = ["CHUNK_ROWS", "prune_postgres", "prune_step"]

CHUNK_ROWS = 5000
"""Rows deleted per transaction."""

_DELETE_REQUESTS = (
    "DELETE FROM requests WHERE ctid = ANY(ARRAY("
    "SELECT ctid FROM requests WHERE start_time_ns < %s LIMIT %s))"
)
_DELETE_ROLLUPS = (
    "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE {unit} < %s LIMIT %s))"
)


def _chunks(
    conn: psycopg.Connection[tuple[Any, ...]], sql: str, cutoff: int, deadline: float | None, locked: bool
) -> tuple[int, bool]:
    """Delete in chunks until none is left (or the deadline): (rows deleted, all done)."""
    removed = 0
    while True:
        with conn.transaction():
            if locked:
                row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (PRUNE_LOCK,)).fetchone()
                if row is None or not row[0]:
                    return removed, True  # another writer prunes
            count = conn.execute(sql, (cutoff, CHUNK_ROWS)).rowcount
        removed += max(count, 0)
        if count < CHUNK_ROWS:
            return removed, True
        if deadline is not None and time.monotonic() >= deadline:
            return removed, False


def prune_step(
    conn: psycopg.Connection[tuple[Any, ...]],
    *,
    older_than_s: float | None,
    rollups_older_than_s: float | None,
    now_ns: int | None = None,
    budget_s: float | None = None,
    locked: bool = True,
) -> Pruned:
    """Prune on ``conn`` (outside a transaction) until done or ``budget_s`` has passed.
    ``locked``: only while holding the prune try-lock (each chunk takes it again)."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    deadline = None if budget_s is None else time.monotonic() + budget_s
    records = rollup_rows = 0
    if older_than_s is not None:
        cutoff = now_ns - int(older_than_s * 1e9)
        records, done = _chunks(conn, _DELETE_REQUESTS, cutoff, deadline, locked)
        if not done:
            return Pruned(records, 0)
    if rollups_older_than_s is not None:
        minute = (now_ns - int(rollups_older_than_s * 1e9)) // MINUTE_NS
        # the minutes before the cutoff, and the hours before the cutoff's hour (which holds
        # minutes that are kept)
        for table, unit, cutoff in (
            ("endpoint_minutes", "minute", minute),
            ("consumer_minutes", "minute", minute),
            ("endpoint_hours", "hour", minute // 60),
            ("consumer_hours", "hour", minute // 60),
        ):
            sql = _DELETE_ROLLUPS.format(table=table, unit=unit)
            n, done = _chunks(conn, sql, cutoff, deadline, locked)
            rollup_rows += n
            if not done:
                break
    return Pruned(records, rollup_rows)


def prune_postgres(
    url: str,
    *,
    older_than_s: float | None,
    rollups_older_than_s: float | None = None,
    now_ns: int | None = None,
) -> Pruned:
    """Delete the records that started more than ``older_than_s`` ago, the rollup minutes
    older than ``rollups_older_than_s`` and the rollup hours before that cutoff's hour (None:
    keep them), ``CHUNK_ROWS`` per transaction.
    Raises :class:`~spanlytics.destinations.stores.StoreError` (one line, no password)."""
    from spanlytics.destinations.postgres.connect import MISSING_DRIVER, connect, describe_error
    from spanlytics.destinations.postgres.options import redact_url

    try:
        import psycopg
    except ImportError:
        raise StoreError(MISSING_DRIVER) from None
    try:
        with connect(url) as conn:
            with conn.transaction():
                version = schema_version(conn)
            if version is None:
                raise StoreError(f"{redact_url(url)} holds no spanlytics store")
            return prune_step(
                conn,
                older_than_s=older_than_s,
                rollups_older_than_s=rollups_older_than_s,
                now_ns=now_ns,
                locked=False,
            )
    except SchemaError as exc:
        raise StoreError(f"{redact_url(url)}: {exc}") from None
    except psycopg.Error as exc:
        raise StoreError(f"{redact_url(url)}: {describe_error(exc, url)}") from None
