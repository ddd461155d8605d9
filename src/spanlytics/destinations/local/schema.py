"""The local store's schema: the ``requests`` table, its migrations and the row <-> record mapping.

The schema version lives in ``PRAGMA user_version``; :data:`MIGRATIONS` is applied in order
on open. Readers of any version read the columns they know, since later versions only add
columns and tables. Version 2 adds the per-minute rollup tables (``rollup_sql``) and fills
them from the records already there, in the migration's transaction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from spanlytics._json import dumps
from spanlytics.consumer import Consumer
from spanlytics.destinations.local.rollup_sql import MIGRATION_V2_DDL, backfill
from spanlytics.destinations.stores import StoreError
from spanlytics.record import ExceptionInfo, MaskedField, RequestRecord

DEFAULT_BUSY_TIMEOUT_S = 5.0

# Column order is the row-tuple order used for writing and reading.
COLUMNS_V1: tuple[tuple[str, str], ...] = (
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
COLUMNS = tuple(name for name, _ in COLUMNS_V1)

Step = str | Callable[[sqlite3.Connection], None]
"""One migration step: a SQL statement, or a function run in the migration's transaction."""

#: Ordered schema migrations; migration ``i`` (0-based) takes ``user_version`` from i to i+1.
#: Append new steps (e.g. ``ALTER TABLE requests ADD COLUMN ...``); never edit old ones.
MIGRATIONS: tuple[tuple[Step, ...], ...] = (
    (
        "CREATE TABLE IF NOT EXISTS requests ("
        + ", ".join(f"{name} {decl}" for name, decl in COLUMNS_V1)
        + ")",
        "CREATE INDEX IF NOT EXISTS requests_start_time ON requests (start_time_ns)",
        "CREATE INDEX IF NOT EXISTS requests_endpoint ON requests (method, route)",
        "CREATE INDEX IF NOT EXISTS requests_consumer ON requests (consumer_id)",
    ),
    # 2: per-minute rollups (rollup_sql), added up from the records the file already holds
    (*MIGRATION_V2_DDL, backfill),
)
ROLLUP_VERSION = 2
"""The first version with the rollup tables: a reader of an older file computes its rollups
from the records (the file is read-only to readers; its next writer migrates it)."""
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(StoreError):
    """The file is not one this version of spanlytics may write (too new, or foreign)."""


def _json(pairs: Sequence[tuple[str, str]]) -> str:
    return dumps(pairs).decode("utf-8") if pairs else "[]"


def to_row(r: RequestRecord) -> tuple[object, ...]:
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


def from_row(row: Sequence[Any]) -> RequestRecord:
    # Columns are named after RequestRecord fields, except the id and the flattened values.
    v = dict(zip(COLUMNS, row, strict=True))
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


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def check_writable(conn: sqlite3.Connection, version: int) -> None:
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


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`; concurrent openers serialise on the lock."""
    if user_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = user_version(conn)  # another process may have migrated meanwhile
        check_writable(conn, version)
        for statements in MIGRATIONS[version:]:
            for step in statements:
                if callable(step):
                    step(conn)
                else:
                    conn.execute(step)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.rollback()
        raise
