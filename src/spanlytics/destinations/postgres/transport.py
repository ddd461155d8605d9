"""Writing one batch to PostgreSQL: :class:`PostgresTransport`, the sender's transport.

One transaction per batch: the batch's COPY lines go into a temporary table, then::

    INSERT INTO requests SELECT * FROM incoming ON CONFLICT (id) DO NOTHING RETURNING ...

returns the records the store did not hold yet, and only those are added to the rollups
(upserts in key order, so that concurrent writers lock rows in one order and never
deadlock). A batch sent twice (the answer to the commit was lost, a spooled batch replayed)
is therefore stored and counted once. Errors become the sender's answers: a lost or refused
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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from spanlytics._throttle import ThrottledLogger
from spanlytics.consumer import Consumer
from spanlytics.delivery.transport import Answer
from spanlytics.destinations.postgres.connect import connect, describe_error, error_outcome
from spanlytics.destinations.postgres.options import redact_url
from spanlytics.destinations.postgres.retention import prune_step
from spanlytics.destinations.postgres.rows import COLUMNS, FORMAT
from spanlytics.destinations.postgres.schema import SchemaError, SchemaTooNew, ensure_schema
from spanlytics.destinations.rollups import TALLY_COLUMNS, Rollups
from spanlytics.record import RequestRecord

if TYPE_CHECKING:
    import psycopg

    from spanlytics.delivery.batches import Batch

__all__ = ["PostgresTransport"]

_log = ThrottledLogger(logging.getLogger("spanlytics.destinations.postgres"))

PRUNE_EVERY_S = 60.0
PRUNE_BUDGET_S = 0.5
SCHEMA_RECHECK_S = 30.0

_COLS = ", ".join(COLUMNS)
_RETURNED = (
    "start_time_ns, method, route, status, duration_ms, request_size, response_size, "
    "consumer_id, consumer_name, consumer_group"
)
_INSERT = (
    f"INSERT INTO requests ({_COLS}) SELECT {_COLS} FROM spanlytics_incoming "
    f"ON CONFLICT (id) DO NOTHING RETURNING {_RETURNED}"
)
_TALLY_TYPES = ("bigint", "bigint", "bigint", "float8", "bigint", "bigint", "bigint", "bigint", "jsonb")
_ADD = ", ".join(
    f"{c} = t.{c} + excluded.{c}" if c != "hist" else "hist = spanlytics_hist_merge(t.hist, excluded.hist)"
    for c in TALLY_COLUMNS
)


def _upsert(table: str, keys: tuple[tuple[str, str], ...]) -> str:
    names = [k for k, _ in keys] + list(TALLY_COLUMNS)
    types = [t for _, t in keys] + list(_TALLY_TYPES)
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    key_list = ", ".join(k for k, _ in keys)
    return (
        f"INSERT INTO {table} AS t ({', '.join(names)}) "
        f"SELECT * FROM unnest({arrays}) AS u({', '.join(names)}) ORDER BY {key_list} "
        f"ON CONFLICT ({key_list}) DO UPDATE SET {_ADD}"
    )


_UPSERT_ENDPOINTS = _upsert(
    "endpoint_minutes", (("minute", "bigint"), ("method", "text"), ("route", "text"), ("status_class", "int"))
)
_UPSERT_CONSUMERS = _upsert(
    "consumer_minutes", (("minute", "bigint"), ("consumer_id", "text"), ("status_class", "int"))
)
# the latest non-null name and group per consumer, whatever order the batches arrive in
_UPSERT_LABELS = """INSERT INTO consumers AS t (consumer_id, name, group_name, last_seen_ns)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) ORDER BY 1
ON CONFLICT (consumer_id) DO UPDATE SET
    name = CASE WHEN excluded.last_seen_ns >= t.last_seen_ns
        THEN coalesce(excluded.name, t.name) ELSE coalesce(t.name, excluded.name) END,
    group_name = CASE WHEN excluded.last_seen_ns >= t.last_seen_ns
        THEN coalesce(excluded.group_name, t.group_name) ELSE coalesce(t.group_name, excluded.group_name) END,
    last_seen_ns = greatest(t.last_seen_ns, excluded.last_seen_ns)"""


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    width = len(rows[0]) if rows else 0
    return [[row[i] for row in rows] for i in range(width)]


def rollups_of(returned: list[tuple[Any, ...]]) -> Rollups:
    """The rollups of the rows the INSERT returned (the records new to the store)."""
    rollups = Rollups()
    for start, method, route, status, duration, req_size, resp_size, cid, name, group in returned:
        consumer = None if cid is None else Consumer(cid, name, group)
        rollups.add(
            RequestRecord(
                "", "", "", start, duration, method, route, "", "", "", status,
                request_size=req_size, response_size=resp_size, consumer=consumer,
            )
        )  # fmt: skip
    return rollups


def write_rollups(conn: psycopg.Connection[tuple[Any, ...]], rollups: Rollups) -> None:
    if rollups.endpoints:
        keys = sorted(rollups.endpoints)
        rows = [(*key, *rollups.endpoints[key].columns()) for key in keys]
        conn.execute(_UPSERT_ENDPOINTS, _columns(rows))
    if rollups.consumers:
        ckeys = sorted(rollups.consumers)
        crows = [(*key, *rollups.consumers[key].columns()) for key in ckeys]
        conn.execute(_UPSERT_CONSUMERS, _columns(crows))
    if rollups.labels:
        labels = [(cid, *rollups.labels[cid]) for cid in sorted(rollups.labels)]
        conn.execute(_UPSERT_LABELS, _columns(labels))


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
                conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS spanlytics_incoming "
                    "(LIKE requests INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )
                conn.commit()
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._pid = os.getpid()
        return self._conn

    def send(self, batch: Batch) -> Answer:
        if batch.path != FORMAT:
            _log.warning(
                "postgres.format", "spanlytics postgres: a batch of unknown format %r dropped", batch.path
            )
            return Answer("rejected", dropped="failed")
        if time.monotonic() < self._too_new_until:
            return Answer("rejected", dropped="schema_newer")
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY spanlytics_incoming ({_COLS}) FROM STDIN") as copy:
                    copy.write(batch.body)
                returned = cur.execute(_INSERT).fetchall()
                write_rollups(conn, rollups_of(returned))
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
