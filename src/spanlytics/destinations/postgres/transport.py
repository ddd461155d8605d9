"""Writing one batch to PostgreSQL: :class:`PostgresTransport`, the sender's transport.

One transaction per batch. Almost every batch is new to the store: its COPY lines go
straight into ``requests`` (a unique violation on ``id`` aborts the transaction otherwise),
and while the server stores them the client reads the fields the rollups need from the same
lines (:mod:`.batch_rollups`) and adds the batch's rollups in the same transaction (upserts
in key order, so that concurrent writers lock rows in one order and never deadlock).

A batch some of whose records are stored already (the answer to the commit was lost, a
spooled batch replayed) fails that COPY and takes the slower path, in a new transaction: the
lines go into a temporary table, then::

    INSERT INTO requests SELECT * FROM incoming ON CONFLICT (id) DO NOTHING RETURNING ...

returns the records the store did not hold yet, and only those are added to the rollups. A
batch sent twice is therefore stored and counted once. Errors become the sender's answers: a lost or refused
connection, a restart, a deadlock -> ``retry``; wrong credentials, no permission, no such
database -> ``pause`` (one warning); a schema newer than this code -> ``rejected``.

After a successful batch, at most once a minute, the transport prunes (retention) for up to
half a second, in small transactions, under a try-lock so one writer of many does it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from spanlytics._throttle import ThrottledLogger
from spanlytics.delivery.transport import Answer
from spanlytics.destinations.postgres.batch_rollups import (
    FIELDS,
    RollupFields,
    combine_documents,
    rollups_json,
    rollups_of,
    write_rollups,
)
from spanlytics.destinations.postgres.connect import connect, describe_error, error_outcome
from spanlytics.destinations.postgres.options import redact_url
from spanlytics.destinations.postgres.retention import prune_step
from spanlytics.destinations.postgres.rows import COLUMNS, FORMAT, LEGACY_FORMAT, split_batch
from spanlytics.destinations.postgres.schema import SchemaError, SchemaTooNew, ensure_schema

if TYPE_CHECKING:
    import psycopg

    from spanlytics.delivery.batches import Batch

__all__ = ["PostgresTransport"]

_log = ThrottledLogger(logging.getLogger("spanlytics.destinations.postgres"))

PRUNE_EVERY_S = 60.0
PRUNE_BUDGET_S = 0.5
SCHEMA_RECHECK_S = 30.0

_COLS = ", ".join(COLUMNS)
_COPY = f"COPY requests ({_COLS}) FROM STDIN"
_COPY_INCOMING = f"COPY spanlytics_incoming ({_COLS}) FROM STDIN"
_INSERT = (
    f"INSERT INTO requests ({_COLS}) SELECT {_COLS} FROM spanlytics_incoming "
    f"ON CONFLICT (id) DO NOTHING RETURNING {', '.join(FIELDS)}"
)
_UNIQUE_VIOLATION = "23505"


def write_new(conn: psycopg.Connection[tuple[Any, ...]], lines: memoryview, rollups: str) -> None:
    """The fast path, for a batch whose records are all new to the store: the lines straight
    into ``requests`` (a unique violation aborts the transaction otherwise), and the batch's
    rollups."""
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(_COPY) as copy:
            copy.write(lines)
        write_rollups(conn, rollups)


def write_some(conn: psycopg.Connection[tuple[Any, ...]], lines: memoryview) -> None:
    """The batch was (perhaps partly) stored already: through a temporary table with ``ON
    CONFLICT DO NOTHING``, and the rollups of the rows the INSERT returns (the new ones) only."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS spanlytics_incoming "
            "(LIKE requests INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        with cur.copy(_COPY_INCOMING) as copy:
            copy.write(lines)
        returned: list[RollupFields] = cur.execute(_INSERT).fetchall()
        if returned:
            write_rollups(conn, rollups_json(rollups_of(returned)))


def _prefer_lz4(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Bodies and headers compressed with lz4 rather than pglz (PostgreSQL 14 and later, when
    built with lz4): this session's writes only, read back the same by every reader, and
    COPY 10-20% faster with bodies of a kilobyte (measured). Elsewhere: pglz, as before."""
    import psycopg

    with contextlib.suppress(psycopg.Error):  # no such setting (< 14), or no lz4 in this build
        conn.execute("SET default_toast_compression = 'lz4'")


# Connections inherited across fork: referenced forever, so that their finaliser never
# closes them in the child (it would end the parent's session).
_inherited: list[object] = []


class PostgresTransport:
    """Sends batches of COPY lines (:mod:`~spanlytics.destinations.postgres.rows`) to ``url``.

    ``retention_s`` / ``rollup_retention_s``: the background prune's ages (None: keep)."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 3.0,
        retention_s: float | None = None,
        rollup_retention_s: float | None = None,
    ) -> None:
        self._url = url
        self.shown = redact_url(url)
        self.connect_timeout_s = connect_timeout_s
        self.retention_s = retention_s
        self.rollup_retention_s = rollup_retention_s
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._pid = os.getpid()
        self._too_new_until = 0.0
        self._next_prune = time.monotonic()  # the first successful batch of a process prunes

    def __repr__(self) -> str:
        return f"PostgresTransport({self.shown!r})"

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # a broken connection: nothing left to do
                conn.close()
        elif conn is not None:
            _inherited.append(conn)

    def abandon(self) -> None:
        if self._conn is not None:
            _inherited.append(self._conn)
        self._conn = None
        self._pid = os.getpid()

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is not None and self._pid != os.getpid():
            self.abandon()
        if self._conn is None or self._conn.closed:
            conn = connect(self._url, self.connect_timeout_s)
            try:
                ensure_schema(conn)
                _prefer_lz4(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._pid = os.getpid()
        return self._conn

    def send(self, batch: Batch) -> Answer:
        if batch.path not in (FORMAT, LEGACY_FORMAT):
            _log.warning(
                "postgres.format", "spanlytics postgres: a batch of unknown format %r dropped", batch.path
            )
            return Answer("rejected", dropped="failed")
        if time.monotonic() < self._too_new_until:
            return Answer("rejected", dropped="schema_newer")
        try:
            conn = self._connection()
            rollups, lines = split_batch(batch.path, batch.body)
            try:
                if rollups is None:  # spooled by an earlier version: no rollups in it
                    write_some(conn, lines)
                else:
                    write_new(conn, lines, combine_documents(rollups))
            except Exception as exc:
                if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
                    raise
                write_some(conn, lines)  # a retry, a replayed spool: some rows are there
        except SchemaTooNew as exc:
            self.close()
            self._too_new_until = time.monotonic() + SCHEMA_RECHECK_S
            _log.error(
                "postgres.schema",
                "spanlytics postgres %s not written: %s; records dropped (upgrade spanlytics)",
                self.shown,
                exc,
            )
            return Answer("rejected", dropped="schema_newer")
        except SchemaError as exc:
            self.close()
            _log.error("postgres.schema", "spanlytics postgres %s not written: %s", self.shown, exc)
            return Answer("pause")
        except Exception as exc:
            return self._failed(exc)
        self._maybe_prune(conn)
        return Answer("sent", bytes_sent=len(batch.body))

    def _failed(self, exc: Exception) -> Answer:
        outcome = error_outcome(exc)
        reason = describe_error(exc, self._url)
        if outcome == "retry":
            self.close()
            _log.warning(
                "postgres.retry", "spanlytics postgres %s: write failed (%s); will retry", self.shown, reason
            )
            return Answer("retry")
        if outcome == "pause":
            self.close()
            _log.error(
                "postgres.pause",
                "spanlytics postgres %s refused the writer (%s); records are spooled and retried later",
                self.shown,
                reason,
            )
            return Answer("pause")
        if self._conn is not None and self._conn.closed:
            self.close()
        _log.warning(
            "postgres.failed", "spanlytics postgres %s: a batch failed (%s); dropped", self.shown, reason
        )
        return Answer("rejected", dropped="failed")

    def _maybe_prune(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        if self.retention_s is None and self.rollup_retention_s is None:
            return
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        try:
            prune_step(
                conn,
                older_than_s=self.retention_s,
                rollups_older_than_s=self.rollup_retention_s,
                budget_s=PRUNE_BUDGET_S,
            )
        except Exception as exc:
            self.close()
            _log.warning(
                "postgres.prune",
                "spanlytics postgres %s: retention prune failed (%s); will try again",
                self.shown,
                describe_error(exc, self._url),
            )
