"""The postgres destination: :class:`PostgresStore` encodes masked records as COPY lines and
hands them to a :class:`~spanlytics.delivery.sender.Sender` with a
:class:`~spanlytics.destinations.postgres.transport.PostgresTransport`, so batches queue in
memory, go to the spool while the database is down or refuses, and are retried with backoff.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from spanlytics.delivery.settings import SenderSettings
from spanlytics.destinations.postgres.connect import MISSING_DRIVER
from spanlytics.destinations.postgres.options import PostgresOptions, redact_url
from spanlytics.destinations.postgres.rows import copy_batches, merge_batches

if TYPE_CHECKING:
    from spanlytics.config import Settings
    from spanlytics.destinations import Destination
    from spanlytics.record import RequestRecord

__all__ = ["PostgresStore", "UnavailableDestination", "build_postgres"]

_logger = logging.getLogger("spanlytics.exporter")

MERGE_RECORDS = 5000
MERGE_BYTES = 16 * 1024 * 1024
"""Batches that wait behind a slow database are joined up to these caps: one transaction
then carries up to 5,000 records, and the rollup upserts (one row per key, not per record)
are shared by all of them."""


class PostgresStore:
    """Writes masked records to the PostgreSQL store at ``url``::

        store = PostgresStore("postgresql://app:pw@db/api", SenderSettings.from_settings(...))
        store.export(masked_records)  # never blocks on the database, never raises
        store.shutdown()              # delivers (or spools) what is queued

    ``max_records`` / ``max_bytes`` bound one encoded batch; batches that wait in the sender's
    queue (the database is slower than the app) are joined up to :data:`MERGE_RECORDS` and
    :data:`MERGE_BYTES`, so a busy store writes fewer, larger transactions.
    """

    name = "postgres"

    def __init__(
        self,
        url: str,
        sender_settings: SenderSettings,
        *,
        max_records: int = 500,
        max_bytes: int = 1024 * 1024,
        retention_s: float | None = None,
        rollup_retention_s: float | None = None,
    ) -> None:
        # requests (behind Sender) and psycopg load when the destination is built
        from spanlytics.delivery.sender import Sender
        from spanlytics.destinations.postgres.transport import PostgresTransport

        self.shown = redact_url(url)
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.transport = PostgresTransport(
            url,
            connect_timeout_s=sender_settings.connect_timeout_s,
            retention_s=retention_s,
            rollup_retention_s=rollup_retention_s,
        )
        # the spool's name comes from the URL without its password: a new password keeps the spool
        self.sender = Sender(
            self.name,
            sender_settings,
            transport=self.transport,
            spool_identity=self.shown,
            merge=functools.partial(merge_batches, max_records=MERGE_RECORDS, max_bytes=MERGE_BYTES),
        )

    def __repr__(self) -> str:
        return f"PostgresStore({self.shown!r})"

    def export(self, records: Sequence[RequestRecord]) -> None:
        for batch in copy_batches(records, self.max_records, self.max_bytes):
            self.sender.submit(batch)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return self.sender.force_flush(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        self.sender.shutdown(timeout_s)
        self.transport.close()


class UnavailableDestination:
    """A destination that cannot be used here (its driver is missing): records are dropped
    and counted, and the app goes on."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dropped = 0

    def export(self, records: Sequence[RequestRecord]) -> None:
        self.dropped += len(records)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        return None


def build_postgres(settings: Settings, options: PostgresOptions) -> Destination:
    """The registry's factory: the URL from the options, delivery, batching and retention
    from the core settings. Without psycopg: one warning, and the destination is not used."""
    assert options.url is not None  # the registry builds it only with a URL
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _logger.warning("%s; it is not used", MISSING_DRIVER)
        return UnavailableDestination(PostgresOptions.name)
    sender = SenderSettings.from_settings(settings, redact_url(options.url))
    return PostgresStore(
        options.url,
        sender,
        max_records=settings.delivery_batch_records,
        max_bytes=settings.delivery_batch_bytes,
        retention_s=_seconds(settings.retention_s),
        rollup_retention_s=_seconds(settings.rollup_retention_s),
    )


def _seconds(value: float | str | None) -> float | None:
    return value if isinstance(value, (int, float)) else None
