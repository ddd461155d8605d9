"""The local store: masked records in one SQLite file, the embedded default destination.

No account, no network: records land in a WAL-mode SQLite file that ``spanlytics report``
reads. Several processes (gunicorn or uvicorn workers) may write the same file at once::

    store = LocalStore("./spanlytics.db")
    store.export(masked_records)   # one transaction per batch; never raises
    for record in iter_records("./spanlytics.db"):
        ...

Deliberate choices:

* Each batch is one ``BEGIN IMMEDIATE`` transaction: the writer takes the write lock up
  front, so a competing process waits for it (``busy_timeout``) instead of failing on a lock
  upgrade. ``synchronous=NORMAL`` in WAL mode is durable against application crashes; a
  power cut may lose the last committed batches, never corrupt the file.
* ``INSERT OR IGNORE`` on the record id: a replayed batch does not duplicate rows.
* The schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` is applied in
  order on open. A file written by a newer spanlytics is left untouched (warning, records
  dropped and counted); readers still read it, since later versions only add columns.
* A file deleted or replaced while the app runs (``rm spanlytics.db``, log rotation) is
  noticed before the next batch (one ``stat`` per batch, on the worker thread): the store
  warns, opens a new file at the path and creates the schema, instead of writing every later
  record into a file nobody can see.
* A connection never crosses ``fork``: the child abandons the inherited one (closing it
  could disturb the parent's locks and WAL) and opens its own on first use.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from spanlytics._json import dumps
from spanlytics._process import reset_in_child
from spanlytics._throttle import ThrottledLogger
from spanlytics.consumer import Consumer
from spanlytics.record import ExceptionInfo, MaskedField, RequestRecord

__all__ = [
    "DEFAULT_PATH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "LocalStore",
    "SchemaError",
    "connect_for_reading",
    "iter_records",
]

_log = ThrottledLogger(logging.getLogger("spanlytics.destinations.local"))

DEFAULT_PATH = "./spanlytics.db"
DEFAULT_BUSY_TIMEOUT_S = 5.0
_PAGE_SIZE = 8192

# Column order is the row-tuple order used for writing and reading.
_COLUMNS_V1: tuple[tuple[str, str], ...] = (
    ("id", "TEXT PRIMARY KEY"),
    ("trace_id", "TEXT NOT NULL"),
    ("span_id", "TEXT NOT NULL"),
    ("start_time_ns", "INTEGER NOT NULL"),
    ("duration_ms", "REAL NOT NULL"),
    ("method", "TEXT NOT NULL"),
    ("route", "TEXT"),
    ("path", "TEXT NOT NULL"),
    ("url", "TEXT NOT NULL"),
    ("query", "TEXT NOT NULL"),
    ("status", "INTEGER"),
    ("scheme", "TEXT NOT NULL"),
    ("host", "TEXT NOT NULL"),
    ("http_version", "TEXT NOT NULL"),
    ("client_ip", "TEXT"),
    ("user_agent", "TEXT"),
    ("request_headers", "TEXT NOT NULL"),
    ("response_headers", "TEXT NOT NULL"),
    ("request_content_type", "TEXT"),
    ("response_content_type", "TEXT"),
    ("request_body", "TEXT"),
    ("response_body", "TEXT"),
    ("request_size", "INTEGER"),
    ("response_size", "INTEGER"),
    ("request_body_truncated", "INTEGER NOT NULL"),
    ("response_body_truncated", "INTEGER NOT NULL"),
    ("consumer_id", "TEXT"),
    ("consumer_name", "TEXT"),
    ("consumer_group", "TEXT"),
    ("consumer_email", "TEXT"),
    ("exception_type", "TEXT"),
    ("exception_message", "TEXT"),
    ("exception_stacktrace", "TEXT"),
    ("service_name", "TEXT"),
    ("masked", "TEXT NOT NULL"),
)
_COLUMNS = tuple(name for name, _ in _COLUMNS_V1)

#: Ordered schema migrations; migration ``i`` (0-based) takes ``user_version`` from i to i+1.
#: Append new steps (e.g. ``ALTER TABLE requests ADD COLUMN ...``); never edit old ones.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE IF NOT EXISTS requests ("
        + ", ".join(f"{name} {decl}" for name, decl in _COLUMNS_V1)
        + ")",
        "CREATE INDEX IF NOT EXISTS requests_start_time ON requests (start_time_ns)",
        "CREATE INDEX IF NOT EXISTS requests_endpoint ON requests (method, route)",
        "CREATE INDEX IF NOT EXISTS requests_consumer ON requests (consumer_id)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

_ROW = f"({', '.join('?' * len(_COLUMNS))})"
_MAX_ROWS_PER_STATEMENT = 64


@functools.lru_cache(maxsize=16)
def _insert_many(rows: int) -> str:
    return f"INSERT OR IGNORE INTO requests ({', '.join(_COLUMNS)}) VALUES {', '.join([_ROW] * rows)}"


def _rows_per_statement(conn: sqlite3.Connection) -> int:
    """As many rows as SQLite's bound-variable limit allows (999 before SQLite 3.32)."""
    getlimit = getattr(conn, "getlimit", None)  # Python >= 3.11
    which = getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", None)
    limit = int(getlimit(which)) if getlimit is not None and which is not None else 999
    return max(1, min(_MAX_ROWS_PER_STATEMENT, limit // len(_COLUMNS)))


_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM requests"
_MIN_NS = -(2**63)

# Connections inherited across fork: referenced forever so that their finaliser never
# closes them in the child. One per store per fork generation, so it stays small.
_inherited: list[sqlite3.Connection] = []


class SchemaError(Exception):
    """The file is not one this version of spanlytics may write (too new, or foreign)."""


def _json(pairs: Sequence[tuple[str, str]]) -> str:
    return dumps(pairs).decode("utf-8")


def _to_row(r: RequestRecord) -> tuple[object, ...]:
    c, e = r.consumer, r.exception
    return (
        r.record_id,
        r.trace_id,
        r.span_id,
        r.start_time_ns,
        r.duration_ms,
        r.method,
        r.route,
        r.path,
        r.url,
        r.query,
        r.status,
        r.scheme,
        r.host,
        r.http_version,
        r.client_ip,
        r.user_agent,
        _json(r.request_headers),
        _json(r.response_headers),
        r.request_content_type,
        r.response_content_type,
        r.request_body,
        r.response_body,
        r.request_size,
        r.response_size,
        int(r.request_body_truncated),
        int(r.response_body_truncated),
        c.identifier if c else None,
        c.name if c else None,
        c.group if c else None,
        c.email if c else None,
        e.type if e else None,
        e.message if e else None,
        e.stacktrace if e else None,
        r.service_name,
        _json([(m.path, m.rule) for m in r.masked]),
    )


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(a), str(b)) for a, b in json.loads(text))


def _from_row(row: Sequence[Any]) -> RequestRecord:
    # Columns are named after RequestRecord fields, except the id and the flattened values.
    v = dict(zip(_COLUMNS, row, strict=True))
    consumer_id, name, group, email = (v.pop(f"consumer_{k}") for k in ("id", "name", "group", "email"))
    exc_type, message, stacktrace = (v.pop(f"exception_{k}") for k in ("type", "message", "stacktrace"))
    v["record_id"] = v.pop("id")
    for key in ("request_headers", "response_headers"):
        v[key] = _pairs(v[key])
    for key in ("request_body_truncated", "response_body_truncated"):
        v[key] = bool(v[key])
    v["masked"] = tuple(MaskedField(path, rule) for path, rule in _pairs(v["masked"]))
    return RequestRecord(
        **v,
        consumer=None if consumer_id is None else Consumer(consumer_id, name, group, email),
        exception=None if exc_type is None else ExceptionInfo(exc_type, message, stacktrace),
    )


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_writable(conn: sqlite3.Connection, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"schema version {version} is newer than this spanlytics supports ({SCHEMA_VERSION})"
        )
    if version == 0:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchone()[0]
        if tables:
            raise SchemaError("the file holds tables but no spanlytics schema version")


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`; concurrent openers serialise on the lock."""
    if _user_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(conn)  # another process may have migrated meanwhile
        _check_writable(conn, version)
        for statements in MIGRATIONS[version:]:
            for sql in statements:
                conn.execute(sql)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        raise


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
            _check_writable(conn, _user_version(conn))
        finally:
            conn.execute("COMMIT")
        # Only takes effect on a new, empty file. Rows with bodies run to a few KB: with 4 KB
        # pages one row fills a page, with 8 KB pages the file is ~1/3 smaller and faster.
        conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


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
    ) -> None:
        self.path = os.path.expanduser(os.fspath(path))
        self.dropped = 0
        self._busy_timeout_s = busy_timeout_s
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

    def _write(self, records: Sequence[RequestRecord]) -> None:
        """One transaction, retried while another process holds the lock.

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
                    self._insert(conn, records)
                    conn.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                    raise
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() + delay > deadline:
                    raise
                self._close_connection()
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _insert(self, conn: sqlite3.Connection, records: Sequence[RequestRecord]) -> None:
        """Many rows per statement: sqlite3 gives up the GIL on every step of a statement, and
        a background thread that gives it up waits for it again (up to the switch interval)
        while the app's thread runs. One step per chunk keeps the worker's pace under load."""
        per = _rows_per_statement(conn)
        rows = [_to_row(r) for r in records]
        start = 0
        while start < len(rows):
            # Full statements, then the rest in powers of two: sqlite3 caches every distinct
            # statement it prepares, and one per batch length held megabytes that never left.
            left = len(rows) - start
            size = per if left >= per else 1 << (left.bit_length() - 1)
            chunk = rows[start : start + size]
            conn.execute(_insert_many(size), [v for row in chunk for v in row])
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
                self._write(records)
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
                # sqlite3 messages ("database is locked", "disk I/O error") carry no bound values.
                reason = getattr(exc, "sqlite_errorname", None) or type(exc).__qualname__
                if isinstance(exc, sqlite3.Error):
                    reason = f"{reason}: {exc}"
                _log.warning(
                    "local.write",
                    "spanlytics local store %s: could not write %d records (%s); dropped",
                    self.path,
                    len(records),
                    reason,
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
        if _user_version(conn) == 0:
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
                yield _from_row(row)
        finally:
            conn.close()

    return rows()
