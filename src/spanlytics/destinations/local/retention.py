"""Retention and the size cap of the local store: old records and rollup minutes deleted in
small transactions, so that a writer (another worker process) never waits long for the lock.

* :func:`prune_local` is ``spanlytics prune`` on a file: every expired row, chunk by chunk.
* :func:`delete_expired` is one chunk of it: the store runs one after a batch, at most once a
  minute while nothing is left to delete, and after every batch while some is (never a long
  loop on the worker thread).
* :func:`trim_to_cap` deletes the oldest records while the file's used size (its pages less
  the free ones) is over the cap, down to :data:`CAP_LOW_WATER` of it, never the rows of the
  batch just written. Rollups are small and are left alone by the cap.

Freed pages are given back to the file system by ``PRAGMA incremental_vacuum`` when the file
has ``auto_vacuum = INCREMENTAL`` (every file created by spanlytics >= the rollups' version;
older files keep their size and reuse the free pages).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from spanlytics.destinations.local.reader import connect_for_reading
from spanlytics.destinations.local.schema import DEFAULT_BUSY_TIMEOUT_S
from spanlytics.destinations.rollups import MINUTE_NS
from spanlytics.destinations.stores import Pruned

__all__ = ["CAP_LOW_WATER", "CHUNK_ROWS", "delete_expired", "prune_local", "trim_to_cap", "used_bytes"]

CHUNK_ROWS = 1000
"""Rows deleted per transaction."""
CAP_LOW_WATER = 0.9
"""Past the size cap, the oldest records go until the used size is under 90% of it."""
_TRIM_CHUNKS_PER_BATCH = 16  # at most this many chunks after one batch; the next batch goes on
_VACUUM_PAGES = 2048  # pages given back per incremental vacuum (16 MB of 8 KB pages)

_ROLLUP_TABLES = (  # table, key, the key's unit in minutes
    ("endpoint_minutes", "minute, method, route, status_class", 1),
    ("consumer_minutes", "minute, consumer_id, status_class", 1),
    ("endpoint_hours", "hour, method, route, status_class", 60),
    ("consumer_hours", "hour, consumer_id, status_class", 60),
)


def _cutoff_ns(now_ns: int, older_than_s: float | None) -> int | None:
    return None if older_than_s is None else now_ns - round(older_than_s * 1e9)


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return conn.execute(sql, (name,)).fetchone() is not None


def _in_transaction(conn: sqlite3.Connection, sql: str, params: tuple[int, ...]) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        removed = conn.execute(sql, params).rowcount
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        raise
    return max(removed, 0)


def _delete_records_before(conn: sqlite3.Connection, cutoff_ns: int, limit: int) -> int:
    sql = (
        "DELETE FROM requests WHERE rowid IN "
        "(SELECT rowid FROM requests WHERE start_time_ns < ? ORDER BY start_time_ns LIMIT ?)"
    )
    return _in_transaction(conn, sql, (cutoff_ns, limit))


def _delete_minutes_before(conn: sqlite3.Connection, cutoff_ns: int, limit: int) -> int:
    removed = 0
    for table, key, minutes in _ROLLUP_TABLES:
        if not _has_table(conn, table):  # a version-1 file (prune does not migrate)
            continue
        # a minute (an hour) goes once all of it is older than the cutoff
        unit = key.split(",", 1)[0]
        sql = f"DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {unit} < ? LIMIT ?)"
        removed += _in_transaction(conn, sql, (cutoff_ns // (MINUTE_NS * minutes), limit))
    return removed


def delete_expired(
    conn: sqlite3.Connection,
    *,
    now_ns: int,
    older_than_s: float | None,
    rollups_older_than_s: float | None,
    limit: int = CHUNK_ROWS,
) -> tuple[Pruned, bool]:
    """One chunk of retention (a transaction per table); returns what went and whether more
    may be left (a chunk came back full)."""
    records = rollup_rows = 0
    more = False
    cutoff = _cutoff_ns(now_ns, older_than_s)
    if cutoff is not None:
        records = _delete_records_before(conn, cutoff, limit)
        more = records >= limit
    cutoff = _cutoff_ns(now_ns, rollups_older_than_s)
    if cutoff is not None:
        rollup_rows = _delete_minutes_before(conn, cutoff, limit)
        more = more or rollup_rows >= limit
    return Pruned(records, rollup_rows), more


def used_bytes(conn: sqlite3.Connection) -> int:
    """The pages in use (all pages less the free ones) times the page size."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * conn.execute("PRAGMA page_size").fetchone()[0])


def vacuum_free_pages(conn: sqlite3.Connection, pages: int = _VACUUM_PAGES) -> None:
    """Give up to ``pages`` free pages back to the file system (files with incremental
    auto-vacuum only; the others reuse their free pages)."""
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        # The pragma frees one page per step: fetch all of its (empty) result.
        conn.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()


def trim_to_cap(
    conn: sqlite3.Connection,
    max_bytes: int,
    *,
    keep_after_rowid: int,
    going_on: bool = False,
    limit: int = CHUNK_ROWS,
) -> tuple[int, bool]:
    """While the used size is over ``max_bytes``, delete the oldest records (never one with a
    rowid above ``keep_after_rowid``: the batch just written) down to :data:`CAP_LOW_WATER`
    of it, for at most a few chunks. Returns the records removed and whether the file is
    still over the low-water mark: then the next batch goes on (``going_on``) even under the cap."""
    target = max_bytes * CAP_LOW_WATER
    used = used_bytes(conn)
    if used <= (target if going_on else max_bytes):
        return 0, False
    removed = gone = 0
    sql = (
        "DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests WHERE rowid <= ? "
        "ORDER BY start_time_ns LIMIT ?)"
    )
    for _ in range(_TRIM_CHUNKS_PER_BATCH):
        gone = _in_transaction(conn, sql, (keep_after_rowid, limit))
        removed += gone
        if gone < limit or used_bytes(conn) <= target:
            break
    if removed:
        vacuum_free_pages(conn)
    return removed, gone >= limit and used_bytes(conn) > target


def prune_local(
    path: str | os.PathLike[str],
    *,
    older_than_s: float | None,
    rollups_older_than_s: float | None = None,
    now_ns: int | None = None,
) -> Pruned:
    """Delete the records started more than ``older_than_s`` ago and the rollup minutes older
    than ``rollups_older_than_s`` (None leaves that kind alone), :data:`CHUNK_ROWS` rows per
    transaction, then give the free pages back. The file is not migrated (an app of an older
    spanlytics may still be writing it). Raises :class:`FileNotFoundError` without a file and
    :class:`~spanlytics.destinations.local.schema.SchemaError` for a file that is not a
    spanlytics store."""
    connect_for_reading(path).close()  # the checks: a file, and a spanlytics one
    file = Path(os.path.expanduser(os.fspath(path)))
    now = time.time_ns() if now_ns is None else now_ns
    conn = sqlite3.connect(file, timeout=DEFAULT_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        total = Pruned(0, 0)
        more = True
        while more:
            pruned, more = delete_expired(
                conn, now_ns=now, older_than_s=older_than_s, rollups_older_than_s=rollups_older_than_s
            )
            total += pruned
        if total.records or total.rollup_rows:
            while conn.execute("PRAGMA freelist_count").fetchone()[0] and _auto_vacuum(conn) == 2:
                vacuum_free_pages(conn)
        return total
    finally:
        conn.close()


def _auto_vacuum(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
