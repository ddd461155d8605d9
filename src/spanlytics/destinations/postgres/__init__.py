"""The PostgreSQL store: the local store's records and rollups in one database for a whole
team (every instance and host writes to it; ``spanlytics report --db postgresql://...`` reads it)::

    SPANLYTICS_DESTINATIONS=postgres
    SPANLYTICS_POSTGRES_URL=postgresql://app:password@db.internal:5432/api

Needs psycopg 3 (``pip install 'spanlytics[postgres]'``), imported only when the destination
is built or a store is read: ``import spanlytics`` and the other destinations work without it.

Deliberate choices:

* Delivery is the sender's (:mod:`spanlytics.delivery.sender`): batches queue in memory and go
  to the spool while the database is down or refuses them, and are written when it is back.
  The spool's name holds the URL without its password; the password is never logged (every
  message shows the URL through :func:`redact_url`), spooled, or in a ``repr``.
* A batch is its rollups (a JSON line) and COPY text (:mod:`.rows`). A batch new to the store
  is copied straight into ``requests`` and its rollups added in the same transaction; one
  whose records are (partly) stored already goes through a temporary table with ``ON CONFLICT
  (id) DO NOTHING`` and adds the rollups of its new records only: a retried batch is stored
  and counted once (:mod:`.transport`, :mod:`.batch_rollups`).
* The schema is versioned (``spanlytics_schema``) and migrated under an advisory lock
  (:mod:`.schema`); a newer schema drops batches (counted) with one error line.
* Retention (:mod:`.retention`) deletes in transactions of a few thousand rows.

Modules: ``options``, ``rows``, ``batch_rollups``, ``schema``, ``connect``, ``transport``,
``store``, ``reader``, ``retention``.
"""

from spanlytics.destinations.postgres.options import PostgresOptions, redact_url
from spanlytics.destinations.postgres.store import PostgresStore, build_postgres

__all__ = ["PostgresOptions", "PostgresStore", "build_postgres", "redact_url"]
