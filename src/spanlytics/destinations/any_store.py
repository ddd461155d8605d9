"""Open whichever store ``db`` names: a SQLite path (the local store) or a ``postgresql://``
URL (the PostgreSQL store). The interface is :mod:`spanlytics.destinations.stores`::

    with open_reader("./spanlytics.db") as reader:          # or "postgresql://..."
        for row in reader.endpoint_rollups(from_minute=None):
            ...
    removed = prune("postgresql://app@db/api", older_than_s=7 * 86400)

The PostgreSQL store is imported only for a URL, so psycopg stays optional.
"""

from __future__ import annotations

from spanlytics.destinations.stores import Pruned, StoreReader

__all__ = ["is_postgres_url", "open_reader", "prune"]


def is_postgres_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def open_reader(db: str) -> StoreReader:
    """A reader of the store at ``db`` (a path or a PostgreSQL URL)."""
    if is_postgres_url(db):
        from spanlytics.destinations.postgres.reader import PostgresReader

        return PostgresReader(db)
    from spanlytics.destinations.local.reader import LocalReader

    return LocalReader(db)


def prune(
    db: str,
    *,
    older_than_s: float | None,
    rollups_older_than_s: float | None = None,
    now_ns: int | None = None,
) -> Pruned:
    """Delete the records older than ``older_than_s`` (and the rollup minutes older than
    ``rollups_older_than_s``) now, in small transactions that never block writers for long;
    None leaves that kind alone."""
    if is_postgres_url(db):
        from spanlytics.destinations.postgres.retention import prune_postgres

        return prune_postgres(
            db, older_than_s=older_than_s, rollups_older_than_s=rollups_older_than_s, now_ns=now_ns
        )
    from spanlytics.destinations.local.retention import prune_local

    return prune_local(
        db, older_than_s=older_than_s, rollups_older_than_s=rollups_older_than_s, now_ns=now_ns
    )
