"""Where masked records go: one folder or module per destination (``local/``, ``readme.py``,
``apitally/``, ``http.py``), each owning its options, encoder and optional pre-mask hook, and
registered in one line of :mod:`spanlytics.destinations.registry`.

A destination is an encoder plus a transport configuration. It sees only records that were
already masked, and it is driven by spanlytics' single background worker per process::

    store = LocalStore("./spanlytics.db")
    store.export(masked_records)  # never raises; failures are logged (throttled) and counted
    store.force_flush()
    store.shutdown()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from spanlytics.record import RequestRecord

__all__ = ["AnnotatesRecords", "Destination"]


@runtime_checkable
class Destination(Protocol):
    """What the background worker needs from a destination.

    ``export`` is called from one background worker thread per process with records that
    are already masked. It must never raise: a failure is logged through a throttled logger
    (never with record values) and the records are counted as dropped. ``force_flush`` and
    ``shutdown`` may be called from another thread (an atexit hook, a signal handler).
    """

    name: str

    def export(self, records: Sequence[RequestRecord]) -> None: ...

    def force_flush(self, timeout_s: float = 10.0) -> bool: ...

    def shutdown(self, timeout_s: float = 10.0) -> None: ...


@runtime_checkable
class AnnotatesRecords(Protocol):
    """A destination that needs something of the unmasked request (ReadMe hashes the raw
    Authorization header). The worker calls ``before_mask`` on every record, before
    masking, and keeps the pairs it returns in :attr:`RequestRecord.annotations`; names
    start with the destination's name, and only that destination reads them."""

    def before_mask(self, record: RequestRecord) -> tuple[tuple[str, str], ...]: ...
