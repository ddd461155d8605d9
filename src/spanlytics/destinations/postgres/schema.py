"""The PostgreSQL store's schema: the local store's tables and columns, versioned.

* ``requests``: the columns of :data:`spanlytics.destinations.local.schema.COLUMNS_V1`, typed
  for PostgreSQL (``bigint`` for integers, ``double precision`` for reals), with an index on
  ``start_time_ns`` (the ``--since`` window, retention).
* ``endpoint_minutes``, ``consumer_minutes``, ``consumers``: the per-minute rollups of
  :mod:`spanlytics.destinations.rollups`, histograms as ``jsonb`` merged by the SQL function
  ``spanlytics_hist_merge(jsonb, jsonb)`` (and summed over rows by the aggregate
  ``spanlytics_hist_sum(jsonb)``).
* ``endpoint_hours``, ``consumer_hours``: the same tallies per hour (``hour = minute // 60``),
  written in the minutes' transaction, so a report reads 24 rows per key for a day instead
  of 1,440 (as the local store's hour tables).
* ``spanlytics_schema``: one row, the schema version. :data:`MIGRATIONS` step ``i`` takes it
  from ``i`` to ``i + 1``; append steps, never edit old ones.

:func:`ensure_schema` migrates under a transaction-level advisory lock, so processes that
start together (the workers of every instance) migrate once and the others wait for it.
A schema newer than this code raises :class:`SchemaTooNew`: the writer drops its batches
(counted) rather than write rows a newer version would misread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spanlytics.destinations.local.schema import COLUMNS_V1

if TYPE_CHECKING:
    import psycopg

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SchemaError", "SchemaTooNew", "ensure_schema", "schema_version"]

MIGRATE_LOCK = 0x5350414E4C59  # "SPANLY": pg_advisory_xact_lock key of migrations
PRUNE_LOCK = MIGRATE_LOCK + 1  # one pruner at a time among every writer

_TYPES = {"TEXT": "text", "INTEGER": "bigint", "REAL": "double precision"}


def _column(name: str, decl: str) -> str:
    kind, _, rest = decl.partition(" ")
    return f"{name} {_TYPES[kind]}{' ' + rest if rest else ''}"


_TALLY = """count bigint NOT NULL,
    errors bigint NOT NULL,
    server_errors bigint NOT NULL,
    duration_ms_sum double precision NOT NULL,
    request_size_sum bigint NOT NULL,
    request_size_n bigint NOT NULL,
    response_size_sum bigint NOT NULL,
    response_size_n bigint NOT NULL,
    hist jsonb NOT NULL"""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE requests (" + ", ".join(_column(n, d) for n, d in COLUMNS_V1) + ")",
        "CREATE INDEX requests_start_time ON requests (start_time_ns)",
        f"""CREATE TABLE endpoint_minutes (
    minute bigint NOT NULL,
    method text NOT NULL,
    route text NOT NULL,
    status_class int NOT NULL,
    {_TALLY},
    PRIMARY KEY (minute, method, route, status_class))""",
        f"""CREATE TABLE consumer_minutes (
    minute bigint NOT NULL,
    consumer_id text NOT NULL,
    status_class int NOT NULL,
    {_TALLY},
    PRIMARY KEY (minute, consumer_id, status_class))""",
        f"""CREATE TABLE endpoint_hours (
    hour bigint NOT NULL,
    method text NOT NULL,
    route text NOT NULL,
    status_class int NOT NULL,
    {_TALLY},
    PRIMARY KEY (hour, method, route, status_class))""",
        f"""CREATE TABLE consumer_hours (
    hour bigint NOT NULL,
    consumer_id text NOT NULL,
    status_class int NOT NULL,
    {_TALLY},
    PRIMARY KEY (hour, consumer_id, status_class))""",
        """CREATE TABLE consumers (
    consumer_id text PRIMARY KEY,
    name text,
    group_name text,
    last_seen_ns bigint NOT NULL)""",
        # bucket counts added up: {"3": 1} + {"3": 2, "4": 1} = {"3": 3, "4": 1}
        """CREATE OR REPLACE FUNCTION spanlytics_hist_merge(a jsonb, b jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(k, n), '{}'::jsonb) FROM (
        SELECT k, sum(v::bigint) AS n FROM (
            SELECT key AS k, value AS v FROM jsonb_each_text(coalesce(a, '{}'::jsonb))
            UNION ALL
            SELECT key, value FROM jsonb_each_text(coalesce(b, '{}'::jsonb))
        ) AS pairs GROUP BY k
    ) AS sums
$$""",
        """CREATE AGGREGATE spanlytics_hist_sum(jsonb) (
    SFUNC = spanlytics_hist_merge, STYPE = jsonb, INITCOND = '{}')""",
        "CREATE TABLE spanlytics_schema (version int NOT NULL)",
        "INSERT INTO spanlytics_schema (version) VALUES (0)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(Exception):
    """The database is not one this version of spanlytics may write."""


class SchemaTooNew(SchemaError):
    """The schema was written by a newer spanlytics."""


def schema_version(conn: psycopg.Connection[tuple[object, ...]]) -> int | None:
    """The schema version, None when the database has no spanlytics schema (in the
    ``search_path``); raises :class:`SchemaError` for a ``requests`` table of someone else."""
    # The catalog read as a table, with this statement's snapshot: to_regclass() reads a cache
    # that may not have seen a table another process committed while we waited for the lock.
    tables = {
        name
        for (name,) in conn.execute(
            "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema() "
            "AND tablename IN ('spanlytics_schema', 'requests')"
        )
    }
    has_version, has_requests = "spanlytics_schema" in tables, "requests" in tables
    if not has_version:
        if has_requests:
            raise SchemaError("the database holds a requests table but no spanlytics schema version")
        return None
    row = conn.execute("SELECT max(version) FROM spanlytics_schema").fetchone()
    return int(str(row[0])) if row is not None and row[0] is not None else 0


def _check(version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"schema version {version} is newer than this spanlytics supports ({SCHEMA_VERSION})"
        )


def ensure_schema(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Create or migrate the schema to :data:`SCHEMA_VERSION` (``conn`` not in a transaction;
    it is left outside one). Concurrent callers serialise on an advisory lock; the first
    migrates, the others find the work done."""
    with conn.transaction():
        version = schema_version(conn)
    _check(version)
    if version == SCHEMA_VERSION:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        version = schema_version(conn)  # another process may have migrated meanwhile
        _check(version)
        start = version or 0
        for statements in MIGRATIONS[start:]:
            for sql in statements:
                conn.execute(sql)  # SQL of ours, no values
        conn.execute("UPDATE spanlytics_schema SET version = %s", (SCHEMA_VERSION,))
