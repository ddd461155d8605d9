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
* Missing parent directories of the path are created when the file is first opened (with
  the process's umask), as SQLite creates the file itself: a configured path such as
  ``./data/spanlytics.db`` just works. A parent that exists but is not a directory, or one
  that cannot be created, drops the batch with a warning as any other write error does.

* Each batch also adds its new records (ids the file did not hold yet) to per-minute and
  per-hour rollups in the same transaction, so a replayed batch counts once; the report reads
  the rollups (schema version 2; a version-1 file is migrated, and backfilled, by its next
  writer, while readers add its records up instead).
* After a batch, records older than ``SPANLYTICS_RETENTION`` (30 days) and rollups older than
  ``SPANLYTICS_ROLLUP_RETENTION`` (400 days) are deleted a chunk of 1,000 rows at a time (at
  most one chunk per batch, at most once a minute once none are left). Past
  ``SPANLYTICS_LOCAL_MAX_MB`` (1024) of used pages the oldest records go first, down to 90%
  of it, never the batch just written; rollups are not removed by the cap (they are small).
  New files use ``auto_vacuum = INCREMENTAL``, so freed pages go back to the file system.

Modules: ``options`` (``local_path``, ``local_max_mb``), ``schema`` (columns, migrations,
rows), ``rollup_sql`` (the rollup tables and upserts), ``store`` (:class:`LocalStore`),
``reader`` (:func:`iter_records`, :class:`LocalReader`) and ``retention``
(:func:`~spanlytics.destinations.local.retention.prune_local`, the size cap).
"""

from spanlytics.destinations.local.options import DEFAULT_PATH, LocalOptions
from spanlytics.destinations.local.reader import LocalReader, connect_for_reading, iter_records
from spanlytics.destinations.local.schema import MIGRATIONS, SCHEMA_VERSION, SchemaError
from spanlytics.destinations.local.store import LocalStore, build_local_store

__all__ = [
    "DEFAULT_PATH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "LocalOptions",
    "LocalReader",
    "LocalStore",
    "SchemaError",
    "build_local_store",
    "connect_for_reading",
    "iter_records",
]
