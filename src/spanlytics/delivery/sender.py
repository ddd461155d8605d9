"""Delivery of encoded batches to a destination: queue, retries, spool, lifecycle.

It knows files and a :class:`~spanlytics.delivery.transport.Transport` (HTTP unless the
destination brings its own, as PostgreSQL does), nothing of any wire format: a
destination's encoder hands it :class:`Batch` objects (bytes plus a path, content type and
record count) and it promises:

* ``submit`` never blocks on the network: a bounded in-memory queue (batches and bytes);
  when it is full, or while the destination is failing, batches go to the spool.
* Retries with exponential backoff and full jitter on connection errors, timeouts, 408, 429
  and 5xx; ``Retry-After`` is honoured; 401/403/404 pause the destination; another 4xx or a
  3xx drops the batch (redirects are never followed). :mod:`~spanlytics.delivery.answers`
  says what each answer means.
* One :class:`~spanlytics.worker.BackgroundWorker` thread per sender (``spanlytics-<name>``)
  sends; it survives anything: an exception while sending one batch (a header that cannot
  be encoded, a bug) drops that batch, counted as ``failed``, logs its type and goes on.
* The spool: one file per batch under a directory per destination, written atomically
  (temp file, fsync, rename), capped in bytes and age; the oldest go first, counted. A new
  process delivers what an earlier one left behind, even after ``kill -9``: files are
  claimed by an atomic rename, so several workers sharing a spool never send one twice.
  An unwritable spool (read-only or full disk) degrades to memory only, with a warning.
* ``force_flush``/``shutdown`` deliver or spool everything within their timeout; forked
  children start with an empty queue; the worker thread never keeps the process alive.

A retried batch keeps its bytes, so the ids the destination format carries stay the same
and the receiver can tell duplicates (a response lost after the batch arrived) apart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spanlytics._process import on_reset, reset_in_child
from spanlytics._throttle import ThrottledLogger
from spanlytics.delivery.answers import retry_after_s
from spanlytics.delivery.batches import Batch
from spanlytics.delivery.settings import SenderSettings
from spanlytics.delivery.spool import Spool, _unlink, default_spool_dir
from spanlytics.delivery.transport import Answer, HttpTransport, StatusHook, Transport
from spanlytics.worker import BackgroundWorker

Merge = Callable[[Batch, Batch], "Batch | None"]
"""A destination's way to join a queued batch and a new one into one (None: they stay two).
Called on the pipeline's thread with the sender's queue locked: it must be quick."""

__all__ = [
    "Answer",
    "Batch",
    "HttpTransport",
    "Merge",
    "Sender",
    "SenderSettings",
    "Spool",
    "StatusHook",
    "Transport",
    "default_spool_dir",
    "retry_after_s",
]

_logger = logging.getLogger("spanlytics.delivery")
_log = ThrottledLogger(_logger)


SENDERS: weakref.WeakSet[Sender] = weakref.WeakSet()
"""Every sender in this process, for ``spanlytics.stats()``; ``reset_process()`` forgets them."""
on_reset(SENDERS.clear)

SPOOL_LOOK_S = 5.0
"""How often the worker looks at the spool for batches another process left behind."""


class Sender:
    """One destination's background delivery: ``submit`` batches, the worker sends them.

    >>> sender = Sender("readme", SenderSettings("https://metrics.readme.io"))  # doctest: +SKIP
    >>> sender.submit(Batch(b"[...]", records=3, path="/v1/request"))
    """

    def __init__(
        self,
        name: str,
        settings: SenderSettings,
        on_status: StatusHook | None = None,
        *,
        transport: Transport | None = None,
        spool_identity: str | None = None,
        merge: Merge | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.merge = merge
        self.transport: Transport = transport or HttpTransport(name, settings, on_status)
        # ``spool_identity`` for a transport whose URL holds a secret (a database password)
        identity = spool_identity or json.dumps([settings.base_url, sorted(settings.headers)])
        key = hashlib.sha256(identity.encode()).hexdigest()[:12]
        # one spool per destination *and* account: another key or URL never sends our batches
        self.spool = Spool(
            Path(settings.spool_dir or default_spool_dir()) / f"{name}-{key}",
            settings.spool_max_bytes,
            settings.spool_max_age_s,
        )
        self._counters = {
            "records_accepted": 0,
            "batches_sent": 0,
            "records_sent": 0,
            "bytes_sent": 0,
            "retries": 0,
            "batches_spooled": 0,
            "dropped_queue_full": 0,
            "dropped_rejected": 0,
            "dropped_redirected": 0,
            "dropped_failed": 0,
            "dropped_shutdown": 0,
        }
        self._worker = BackgroundWorker(
            f"spanlytics-{name}", self._deliver_all, interval_s=SPOOL_LOOK_S, on_error=self._recover
        )
        self._reset()
        reset_in_child(self, Sender._reset)
        SENDERS.add(self)
        if self.spool.has_leftovers():  # an earlier process (even a killed one) left batches
            self._worker.wake()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._worker.reset_after_fork()
        self._random = random.Random()  # never the app's global random state
        self._cond = threading.Condition()  # the queue; notified when a batch is settled
        self._queue: deque[Batch] = deque()
        self._queued_bytes = 0
        self._inflight: Batch | None = None
        self._inflight_claim: Path | None = None  # its spool file, when it came from the spool
        self._attempt = 0
        self.transport.abandon()  # a forked child opens its own connections
        self._failing = False
        self._paused_until = 0.0
        self._spool_hint = True  # maybe something on disk (an earlier process's batches)
        self._next_spool_look = time.monotonic() + SPOOL_LOOK_S

    # -- producer side (the pipeline's background thread) -------------------------------------

    def submit(self, batch: Batch) -> None:
        """Queue ``batch``; spool it when the queue is full or the destination is failing."""
        if self._pid != os.getpid():  # a fork that ran no at-fork hooks (uWSGI can)
            self._reset()
        self._counters["records_accepted"] += batch.records
        stopping = self._worker.stopping
        with self._cond:
            fits = self._queued_bytes + len(batch.body) <= self.settings.max_queue_bytes
            if fits and not self._failing and not stopping:
                if self._queue and self._merged_into_tail(batch):
                    batch = None  # type: ignore[assignment]
                elif len(self._queue) < self.settings.max_queue_batches:
                    self._queue.append(batch)
                    self._queued_bytes += len(batch.body)
                    batch = None  # type: ignore[assignment]
        if batch is not None and not self._to_spool(batch):
            self._keep_in_memory(batch)
        self._worker.wake()

    def _merged_into_tail(self, batch: Batch) -> bool:
        """With a ``merge``, a batch that arrives while others wait joins the newest of them
        (up to the destination's cap): when the destination falls behind, its batches grow,
        and each costs one round trip instead of many. Called with the queue's lock held."""
        if self.merge is None:
            return False
        tail = self._queue[-1]
        try:
            merged = self.merge(tail, batch)
        except Exception as exc:  # a destination's bug: queue the batch as it is
            _log.failure(f"merge.{self.name}", f"spanlytics {self.name}: could not merge batches", exc)
            return False
        if merged is None:
            return False
        self._queue[-1] = merged
        self._queued_bytes += len(merged.body) - len(tail.body)
        return True

    def _to_spool(self, batch: Batch) -> bool:
        if not self.spool.write(batch):
            return False
        self._counters["batches_spooled"] += 1
        self._spool_hint = True
        return True

    def _keep_in_memory(self, batch: Batch) -> None:
        """No spool: keep the newest in memory, dropping (and counting) the oldest."""
        with self._cond:
            self._queue.append(batch)
            self._queued_bytes += len(batch.body)
            while len(self._queue) > self.settings.max_queue_batches or (
                self._queued_bytes > self.settings.max_queue_bytes and len(self._queue) > 1
            ):
                dropped = self._queue.popleft()
                self._queued_bytes -= len(dropped.body)
                self._counters["dropped_queue_full"] += dropped.records
                _log.warning(
                    f"queue.full.{self.name}", "spanlytics %s: queue full, oldest batch dropped", self.name
                )

    # -- the worker ---------------------------------------------------------------------------

    def _next(self) -> tuple[Batch, Path | None] | None:
        with self._cond:
            if self._queue:
                batch = self._queue.popleft()
                self._queued_bytes -= len(batch.body)
                self._inflight = batch
                return batch, None
        now = time.monotonic()
        if now >= self._next_spool_look:  # another process may have left batches
            self._next_spool_look = now + SPOOL_LOOK_S
            self._spool_hint = True
        if self._spool_hint and self.spool.enabled:
            self._spool_hint = False  # before the look: a batch spooled meanwhile sets it again
            claimed = self.spool.claim_oldest()
            if claimed is not None:
                self._spool_hint = True  # there may be more
                self._inflight, self._inflight_claim = claimed
                return claimed
        return None

    def _deliver_all(self) -> float | None:
        """The worker's tick: send batches until none is left, or until the destination
        fails; then the seconds to wait (a pause, a backoff) or None (the spool interval)."""
        while not self._worker.stopping:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                return pause
            item = self._next()
            if item is None:
                return None
            wait = self._deliver(*item)
            if wait is not None:
                return wait
        return None

    def _deliver(self, batch: Batch, claimed: Path | None) -> float | None:
        """Send one batch: None when it is settled (sent or dropped), else the seconds to
        wait before the next try (it is kept: on disk when possible)."""
        outcome, wait = self._send(batch)
        if outcome in ("sent", "rejected"):
            self._attempt = 0
            self._failing = False
            if claimed is not None:
                _unlink(claimed)
            self._settled()
            return None
        # retry or pause: keep the batch (on disk when possible) and everything queued
        self._failing = True
        self._counters["retries"] += 1
        if claimed is not None:
            self.spool.release(claimed)
        elif not self._to_spool(batch):
            with self._cond:
                self._queue.appendleft(batch)
                self._queued_bytes += len(batch.body)
        self._settled()
        self._spool_queue()
        if outcome == "pause":
            self._paused_until = time.monotonic() + self.settings.pause_s
            return self.settings.pause_s
        self._attempt += 1
        cap = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * 2 ** min(self._attempt, 30))
        return wait if wait is not None else self._random.uniform(0, cap)  # full jitter

    def _settled(self) -> None:
        """The batch in hand was sent, dropped or put back: it is no longer in flight."""
        with self._cond:
            self._inflight = None
            self._inflight_claim = None
            self._cond.notify_all()

    def _recover(self, exc: Exception) -> None:
        """An unexpected error in the worker: drop (and count) the batch in hand, go on."""
        batch, claimed = self._inflight, self._inflight_claim
        self._settled()
        if batch is not None:
            self._counters["dropped_failed"] += batch.records
            if claimed is not None:
                _unlink(claimed)
        _log.failure(
            f"worker.{self.name}",
            f"spanlytics {self.name}: delivery worker error; the batch in hand is dropped, delivery goes on",
            exc,
        )

    def _spool_queue(self) -> None:
        """While the destination fails, move queued batches to disk (bounded memory, crash-safe)."""
        while self.spool.enabled:
            with self._cond:
                if not self._queue:
                    return
                batch = self._queue.popleft()
                self._queued_bytes -= len(batch.body)
            if not self._to_spool(batch):
                with self._cond:
                    self._queue.appendleft(batch)
                    self._queued_bytes += len(batch.body)
                return

    def _send(self, batch: Batch) -> tuple[str, float | None]:
        """Hand one batch to the transport: ("sent" | "rejected" | "retry" | "pause", seconds
        to wait), counting what it says."""
        answer = self.transport.send(batch)
        if answer.outcome == "sent":
            self._counters["batches_sent"] += 1
            self._counters["records_sent"] += batch.records
            self._counters["bytes_sent"] += answer.bytes_sent
        elif answer.dropped is not None:
            key = f"dropped_{answer.dropped}"
            self._counters[key] = self._counters.get(key, 0) + batch.records
        return answer.outcome, answer.wait_s

    # -- lifecycle ----------------------------------------------------------------------------

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the queue is delivered; at the deadline spool what is left."""
        deadline = time.monotonic() + timeout_s
        worker = self._worker
        with self._cond:
            if self._queue:
                worker.wake()
            # a dead thread's queue never empties (it is not started until there is work)
            while (self._queue or self._inflight is not None) and not self._failing and worker.working:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(timeout=min(remaining, 0.05))
            done = not self._queue and self._inflight is None
        if not done:
            self._spool_queue()
        return done

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued within ``timeout_s``; spool the rest; stop the worker.

        Idempotent: a second call finds nothing to do and logs nothing.
        """
        if self._worker.stopping:
            return
        self.force_flush(timeout_s)
        ended = self._worker.stop(min(timeout_s, self.settings.read_timeout_s + 1))
        self._spool_queue()
        inflight = self._inflight
        if inflight is not None and not ended:
            self._to_spool(inflight)  # at-least-once: it may arrive twice, never not at all
        with self._cond:
            lost = sum(b.records for b in self._queue)
            self._queue.clear()
        if lost:
            self._counters["dropped_shutdown"] += lost
        dropped = self.dropped()
        if dropped:
            _logger.warning(
                "spanlytics %s dropped %d record(s): %s", self.name, sum(dropped.values()), dropped
            )

    def dropped(self) -> dict[str, int]:
        counters = {
            k.removeprefix("dropped_"): v for k, v in self._counters.items() if k.startswith("dropped_")
        }
        counters.update(self.spool.dropped_records)
        return {k: v for k, v in counters.items() if v}

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {k: v for k, v in self._counters.items() if not k.startswith("dropped_")}
        stats["dropped"] = self.dropped()
        stats["queued_batches"] = len(self._queue)
        stats["spool_enabled"] = self.spool.enabled
        return stats
