"""The local store's writer: :class:`LocalStore`, one SQLite file in WAL mode, shared by every
worker process of a server. See :mod:`spanlytics.destinations.local` for the choices."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from spanlytics._process import reset_in_child
from spanlytics._throttle import ThrottledLogger
from spanlytics.destinations.local.options import DEFAULT_PATH, LocalOptions
from spanlytics.destinations.local.retention import delete_expired, trim_to_cap
from spanlytics.destinations.local.rollup_sql import register_functions, write_rollups
from spanlytics.destinations.local.schema import (
    COLUMNS,
    DEFAULT_BUSY_TIMEOUT_S,
    SchemaError,
    check_writable,
    migrate,
    to_row,
    user_version,
)
from spanlytics.destinations.rollups import Rollups

if TYPE_CHECKING:
    from spanlytics.config import Settings
    from spanlytics.record import RequestRecord

_log = ThrottledLogger(logging.getLogger("spanlytics.destinations.local"))

_PAGE_SIZE = 8192
_DAY_S = 86400.0
_RETENTION_EVERY_NS = 60_000_000_000  # one retention chunk a minute while nothing is left
_ROW = f"({', '.join('?' * len(COLUMNS))})"
_MAX_ROWS_PER_STATEMENT = 64


@functools.lru_cache(maxsize=16)
def _held_ids(rows: int) -> str:
    return f"SELECT id FROM requests WHERE id IN ({', '.join('?' * rows)})"


@functools.lru_cache(maxsize=16)
def _insert_many(rows: int) -> str:
    return f"INSERT OR IGNORE INTO requests ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW] * rows)}"


def _rows_per_statement(conn: sqlite3.Connection) -> int:
    """As many rows as SQLite's bound-variable limit allows (999 before SQLite 3.32)."""
    getlimit = getattr(conn, "getlimit", None)  # Python >= 3.11
    which = getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", None)
    limit = int(getlimit(which)) if getlimit is not None and which is not None else 999
    return max(1, min(_MAX_ROWS_PER_STATEMENT, limit // len(COLUMNS)))


# Connections inherited across fork: referenced forever so that their finaliser never
# closes them in the child. One per store per fork generation, so it stays small.
_inherited: list[sqlite3.Connection] = []

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # result codes (sqlite3 names them only from Python 3.11)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _open_for_writing(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        # Before touching a file we may not own. One read transaction: in autocommit the
        # version and the table list would be two snapshots, and a worker migrating the file
        # in between would look like a foreign database.
        conn.execute("BEGIN")
        try:
            check_writable(conn, user_version(conn))
        finally:
            conn.execute("COMMIT")
        # Only take effect on a new, empty file. Rows with bodies run to a few KB: with 4 KB
        # pages one row fills a page, with 8 KB pages the file is ~1/3 smaller and faster.
        # Incremental auto-vacuum lets retention give freed pages back to the file system.
        conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        register_functions(conn)  # the rollup upserts (and the v2 migration's backfill) call it
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _reason(exc: Exception) -> str:
    """A write error for a log line: its SQLite name or type, and sqlite3's message, which
    ("database is locked", "disk I/O error") carries no bound values."""
    reason = getattr(exc, "sqlite_errorname", None) or type(exc).__qualname__
    return f"{reason}: {exc}" if isinstance(exc, sqlite3.Error) else str(reason)


def _identity(path: str) -> tuple[int, int] | None:
    """The file at ``path`` as (device, inode), None when there is none."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


class LocalStore:
    """Destination writing masked records to a SQLite file (WAL mode, schema versioned)::

        store = LocalStore("/var/lib/api/spanlytics.db")
        store.export(masked_records)
        store.dropped  # records that could not be written

    Missing parent directories of ``path`` are created on the first write. Each batch also
    adds up its new records into the per-minute rollups, in the same transaction. After a
    batch, records older than ``retention_s`` and rollup minutes older than
    ``rollup_retention_s`` (None: kept) are deleted a small chunk at a time, and past
    ``max_mb`` of used pages the oldest records go (see :mod:`.retention`).
    ``export`` never raises. When the file cannot be written (bad path, disk error, lock
    held longer than ``busy_timeout_s``, a newer schema) the batch is dropped, counted in
    :attr:`dropped` and a rate-limited warning names the path and the error type. Nothing is
    buffered beyond the batch being written.
    """

    name = "local"

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        retention_s: float | None = 30 * _DAY_S,
        rollup_retention_s: float | None = 400 * _DAY_S,
        max_mb: float | None = 1024,
    ) -> None:
        self.path = os.path.expanduser(os.fspath(path))
        self.dropped = 0
        self._busy_timeout_s = busy_timeout_s
        self.retention_s = retention_s
        self.rollup_retention_s = rollup_retention_s
        self.max_bytes = None if max_mb is None else int(max_mb * 2**20)
        self._next_retention_ns = 0  # right after start
        self._trimming = False
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._pid = os.getpid()
        self._closed = False
        reset_in_child(self, LocalStore._after_fork)

    def _after_fork(self) -> None:
        # The parent's worker thread may have held the lock at fork time; it does not exist here.
        self._lock = threading.Lock()
        self._abandon_if_inherited()

    def _abandon_if_inherited(self) -> None:
        if self._conn is not None and self._pid != os.getpid():
            _inherited.append(self._conn)
            self._conn = None

    def _write(self, records: Sequence[RequestRecord]) -> int:
        """One transaction, retried while another process holds the lock; returns the largest
        rowid before the batch.

        SQLite honours ``busy_timeout`` for most lock waits, but not all: switching a new
        file to WAL while another process opens it, for one, fails at once with
        SQLITE_BUSY. Workers of one server start and stop together, so retry until the
        busy deadline (this runs on the background thread; nothing waits on it).
        """
        deadline = time.monotonic() + self._busy_timeout_s
        delay = 0.01
        while True:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    last_rowid = conn.execute("SELECT coalesce(max(rowid), 0) FROM requests").fetchone()[0]
                    new = self._new_records(conn, records)
                    self._insert(conn, new)
                    write_rollups(conn, Rollups.of(new))
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                    raise
                return int(last_rowid)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + delay > deadline:
                    raise
                self._close_connection()
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _new_records(
        self, conn: sqlite3.Connection, records: Sequence[RequestRecord]
    ) -> Sequence[RequestRecord]:
        """The records whose ids the file does not hold yet (a replayed batch counts once)."""
        per = _rows_per_statement(conn) * len(COLUMNS)  # the variable limit, as the inserts use
        ids = [r.record_id for r in records]
        held: set[str] = set()
        for start in range(0, len(ids), per):
            chunk = ids[start : start + per]
            size = min(per, 1 << (len(chunk) - 1).bit_length())  # powers of two: few statements
            chunk += [chunk[-1]] * (size - len(chunk))
            held.update(row[0] for row in conn.execute(_held_ids(size), chunk))
        if not held:
            return records
        seen: set[str] = set()
        new = []
        for r in records:  # a batch holding one id twice keeps the first, as INSERT OR IGNORE does
            if r.record_id not in held and r.record_id not in seen:
                seen.add(r.record_id)
                new.append(r)
        return new

    def _keep_in_bounds(self, conn: sqlite3.Connection, last_rowid: int) -> None:
        """After a committed batch: one chunk of retention when due, and the size cap."""
        now = time.time_ns()
        if self._next_retention_ns <= now and (self.retention_s or self.rollup_retention_s):
            _, more = delete_expired(
                conn, now_ns=now, older_than_s=self.retention_s, rollups_older_than_s=self.rollup_retention_s
            )
            self._next_retention_ns = now if more else now + _RETENTION_EVERY_NS
        if self.max_bytes is not None:
            # keep_after_rowid: the rows of the batch just written (and any later) stay
            _, self._trimming = trim_to_cap(
                conn, self.max_bytes, keep_after_rowid=last_rowid, going_on=self._trimming
            )

    def _insert(self, conn: sqlite3.Connection, records: Sequence[RequestRecord]) -> None:
        """Many rows per statement: sqlite3 gives up the GIL on every step of a statement, and
        a background thread that gives it up waits for it again (up to the switch interval)
        while the app's thread runs. One step per chunk keeps the worker's pace under load."""
        per = _rows_per_statement(conn)
        start, total = 0, len(records)
        while start < total:
            # Full statements, then the rest in powers of two: sqlite3 caches every distinct
            # statement it prepares, and one per batch length held megabytes that never left.
            left = total - start
            size = per if left >= per else 1 << (left.bit_length() - 1)
            params: list[object] = []
            for record in records[start : start + size]:
                params += to_row(record)  # one flat list, no row tuple kept alive
            conn.execute(_insert_many(size), params)
            start += size

    def _connection(self) -> sqlite3.Connection:
        self._abandon_if_inherited()
        if self._conn is None:
            parent = os.path.dirname(self.path)
            if parent:  # a configured path in a new directory should just work
                os.makedirs(parent, exist_ok=True)
            self._conn = _open_for_writing(self.path, self._busy_timeout_s)
            self._pid = os.getpid()
            self._identity = _identity(self.path)
        return self._conn

    def _reopen_if_replaced(self) -> None:
        """Notice that the open file is no longer the one at ``path`` (deleted, replaced)."""
        if self._conn is None or self._pid != os.getpid() or self._identity is None:
            return
        if _identity(self.path) == self._identity:
            return
        self._close_connection()
        _log.warning(
            f"local.replaced.{self.path}",
            "spanlytics local store %s was deleted or replaced while in use; "
            "writing to a new file at that path",
            self.path,
        )

    def _close_connection(self) -> None:
        self._abandon_if_inherited()
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
            self._identity = None

    def export(self, records: Sequence[RequestRecord]) -> None:
        """Write one batch in one transaction; on failure drop it, count it and warn."""
        if not records:
            return
        with self._lock:
            if self._closed:
                self.dropped += len(records)
                _log.warning(
                    "local.closed", "spanlytics local store %s is shut down; records dropped", self.path
                )
                return
            try:
                self._reopen_if_replaced()
                last_rowid = self._write(records)
            except SchemaError as exc:
                self.dropped += len(records)
                self._close_connection()
                _log.warning(
                    "local.schema",
                    "spanlytics local store %s not written: %s; records dropped "
                    "(upgrade spanlytics or choose another file)",
                    self.path,
                    exc,
                )
            except Exception as exc:
                self.dropped += len(records)
                self._close_connection()  # reopen on the next batch: the error may be transient
                _log.warning(
                    "local.write",
                    "spanlytics local store %s: could not write %d records (%s); dropped",
                    self.path,
                    len(records),
                    _reason(exc),
                )
            else:
                self._maintain(last_rowid)

    def _maintain(self, last_rowid: int) -> None:
        """Retention and the size cap after a committed batch; a failure (the lock held by
        another process too long) only warns: the next batch tries again."""
        try:
            conn = self._connection()
            self._keep_in_bounds(conn, last_rowid)
        except Exception as exc:
            self._trimming = False
            _log.warning(
                "local.retention",
                "spanlytics local store %s: could not delete old records (%s); trying again later",
                self.path,
                _reason(exc),
            )

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Every exported batch is committed; this waits for a batch still being written."""
        if not self._lock.acquire(timeout=max(timeout_s, 0.0)):
            return False
        self._lock.release()
        return True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Close the connection; later exports are dropped and counted."""
        self._closed = True
        if self._lock.acquire(timeout=max(timeout_s, 0.0)):
            try:
                self._close_connection()
            finally:
                self._lock.release()


def build_local_store(settings: Settings, options: LocalOptions) -> LocalStore:
    """The registry's factory: the file, its size cap and the retention settings."""
    return LocalStore(
        options.path,
        retention_s=settings.retention_s,
        rollup_retention_s=settings.rollup_retention_s,
        max_mb=options.max_mb,
    )
