"""The stores behind one interface: what the report (and the dashboard) read, and pruning.

This module holds the interface (:class:`StoreReader`, the row shapes, :class:`StoreError`,
:class:`Pruned`), which each store implements; :mod:`spanlytics.destinations.any_store`
opens the right one for a ``db`` that is a SQLite path (the local store) or a
``postgresql://`` URL (the PostgreSQL store), so that callers never care which::

    with open_reader("./spanlytics.db") as reader:          # or "postgresql://..."
        for row in reader.endpoint_rollups(from_minute=None):
            ...
    removed = prune("postgresql://app@db/api", older_than_s=7 * 86400)

Every reader reads one consistent snapshot inside its ``with`` block, opens the store
read-only where the store allows it, and raises :class:`StoreError` (one line, never a
password) when the store cannot be read; a SQLite path without a file raises
:class:`FileNotFoundError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from typing_extensions import Self

    from spanlytics.record import RequestRecord

__all__ = [
    "ConsumerRollupRow",
    "EndpointRollupRow",
    "Pruned",
    "RawRow",
    "StoreError",
    "StoreReader",
]

EndpointRollupRow = tuple[
    str, "str | None", int, int, int, int, float, int, int, int, int, "str | Mapping[str, int]"
]
"""method, route (None: unmatched), status class, count, errors, server_errors,
duration_ms_sum, request_size_sum, request_size_n, response_size_sum, response_size_n, hist
(JSON text or the mapping the driver decoded; :func:`~spanlytics.destinations.rollups.parse_hist`)."""
ConsumerRollupRow = tuple[
    "str | None", int, int, int, int, float, int, int, int, int, "str | Mapping[str, int]"
]
"""consumer_id (None: no consumer), status class, then the tally columns as for endpoints."""
RawRow = tuple[str, "str | None", "str | None", "int | None", float, "int | None", "int | None"]
"""method, route, consumer_id, status, duration_ms, request_size, response_size"""


class StoreError(Exception):
    """A store that cannot be read or written: the message is one line for a person, and
    never holds a password."""


class StoreReader(Protocol):
    """A read-only snapshot of one store (see the module docstring).

    Rollup rows are per minute (``minute`` = ``start_time_ns // 60e9``); ``from_minute`` None
    means all time. ``raw_rows`` reads request records started in ``[since_ns, until_ns)``,
    for the part of a window that does not fill a whole minute.
    """

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def endpoint_rollups(self, from_minute: int | None) -> Iterable[EndpointRollupRow]: ...

    def consumer_rollups(self, from_minute: int | None) -> Iterable[ConsumerRollupRow]: ...

    def consumer_labels(self) -> Iterable[tuple[str, str | None, str | None]]:
        """(consumer_id, name, group): the latest non-null name and group seen per consumer."""

    def raw_rows(self, since_ns: int, until_ns: int) -> Iterable[RawRow]: ...

    def records(self, since_ns: int | None = None) -> Iterator[RequestRecord]:
        """The stored records, oldest first (``since_ns``: started then or later)."""


@dataclass(frozen=True)
class Pruned:
    """What one prune removed."""

    records: int
    rollup_rows: int

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(self.records + other.records, self.rollup_rows + other.rollup_rows)
