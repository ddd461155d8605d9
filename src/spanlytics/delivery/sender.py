"""Delivery of encoded batches to an HTTP destination: queue, retries, spool, lifecycle.

It knows HTTP and files, nothing of any wire format: a destination's encoder hands it
:class:`Batch` objects (bytes plus a path, content type and record count) and it promises:

* ``submit`` never blocks on the network: a bounded in-memory queue (batches and bytes);
  when it is full, or while the destination is failing, batches go to the spool.
* Retries with exponential backoff and full jitter on connection errors, timeouts, 408, 429
  and 5xx; ``Retry-After`` (seconds or an HTTP date) is honoured. Another 4xx drops that
  batch (logged once, with the status, never the payload). 401/403/404 (a bad key or client
  id) pause the destination for a while with a clear error instead of hammering it.
* Redirects are never followed: ``requests`` would turn the POST into a GET without its
  body, which a receiver answers with 200. A 3xx is a wrong URL in the configuration: the
  batch is dropped and counted (``redirected``; it would never succeed) and an error names
  the destination and the host it redirects to.
* The worker survives anything: an exception while sending one batch (a header that cannot
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

import gzip
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
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

from spanlytics.__about__ import VERSION
from spanlytics._process import reset_in_child
from spanlytics._throttle import ThrottledLogger
from spanlytics.delivery.settings import SenderSettings, host_of
from spanlytics.delivery.spool import Batch, Spool, _unlink, default_spool_dir

__all__ = ["Batch", "Sender", "SenderSettings", "Spool", "default_spool_dir", "retry_after_s"]

_logger = logging.getLogger("spanlytics.delivery")
_log = ThrottledLogger(_logger)

RETRY_STATUSES = frozenset({408, 429})
MAX_RETRY_AFTER_S = 600.0
RECOVERY_PAUSE_S = 1.0
"""After an unexpected error the worker waits this long, so that a repeating one cannot spin."""


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(when - (time.time() if now is None else now), 0.0), MAX_RETRY_AFTER_S)


StatusHook = Callable[[Batch, requests.Response], "str | None"]
"""A destination's say on a non-2xx answer: ``"rejected"`` (drop the batch), ``"retry"``,
``"pause"``, or None for the default handling. Called on the sender's worker thread."""

SENDERS: weakref.WeakSet[Sender] = weakref.WeakSet()
"""Every sender in this process, for ``spanlytics.stats()``."""


class Sender:
    """One destination's background delivery: ``submit`` batches, the worker sends them.

    >>> sender = Sender("readme", SenderSettings("https://metrics.readme.io"))  # doctest: +SKIP
    >>> sender.submit(Batch(b"[...]", records=3, path="/v1/request"))
    """

    def __init__(self, name: str, settings: SenderSettings, on_status: StatusHook | None = None) -> None:
        self.name = name
        self.settings = settings
        self.on_status = on_status
        identity = json.dumps([settings.base_url, sorted(settings.headers)]).encode()
        key = hashlib.sha256(identity).hexdigest()[:12]
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
        self._reset()
        reset_in_child(self, Sender._reset)
        SENDERS.add(self)
        if self.spool.has_leftovers():  # an earlier process (even a killed one) left batches
            self._start()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._random = random.Random()  # never the app's global random state
        self._cond = threading.Condition()
        self._queue: deque[Batch] = deque()
        self._queued_bytes = 0
        self._inflight: Batch | None = None
        self._inflight_claim: Path | None = None  # its spool file, when it came from the spool
        self._attempt = 0
        self._thread: threading.Thread | None = None
        self._session: requests.Session | None = None
        self._stopping = False
        self._failing = False
        self._paused_until = 0.0
        self._spool_hint = True  # maybe something on disk (an earlier process's batches)

    # -- producer side (the exporter's background thread) ------------------------------------

    def submit(self, batch: Batch) -> None:
        """Queue ``batch``; spool it when the queue is full or the destination is failing."""
        if self._pid != os.getpid():
            self._reset()
        self._counters["records_accepted"] += batch.records
        with self._cond:
            room = (
                len(self._queue) < self.settings.max_queue_batches
                and self._queued_bytes + len(batch.body) <= self.settings.max_queue_bytes
            )
            if room and not self._failing and not self._stopping:
                self._queue.append(batch)
                self._queued_bytes += len(batch.body)
                self._cond.notify()
                batch = None  # type: ignore[assignment]
        if batch is not None and not self._to_spool(batch):
            self._keep_in_memory(batch)
        if self._thread is None and not self._stopping:
            self._start()

    def _to_spool(self, batch: Batch) -> bool:
        if not self.spool.write(batch):
            return False
        self._counters["batches_spooled"] += 1
        with self._cond:
            self._spool_hint = True
            self._cond.notify()
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
            self._cond.notify()

    def _start(self) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"spanlytics-{self.name}", daemon=True)
                self._thread.start()

    # -- the worker ---------------------------------------------------------------------------

    def _next(self) -> tuple[Batch, Path | None] | None:
        with self._cond:
            if self._queue:
                batch = self._queue.popleft()
                self._queued_bytes -= len(batch.body)
                self._inflight = batch
                return batch, None
            hint = self._spool_hint
        if hint and self.spool.enabled:
            claimed = self.spool.claim_oldest()
            if claimed is not None:
                self._inflight, self._inflight_claim = claimed
                return claimed
            with self._cond:
                self._spool_hint = False
        return None

    def _run(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception as exc:  # the thread must outlive any one batch
                self._recover(exc)

    def _step(self) -> bool:
        """Wait for a batch and deliver it once; False when the sender is stopping."""
        with self._cond:
            while not self._stopping and not self._queue and not self._spool_hint:
                # look at the spool now and then: another process may have left batches
                if not self._cond.wait(timeout=5.0):
                    self._spool_hint = True
            if self._stopping:
                return False
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                self._cond.wait(timeout=pause)
                return True
        item = self._next()
        if item is None:
            return True
        batch, claimed = item
        outcome, wait = self._send(batch)
        if outcome in ("sent", "rejected"):
            self._attempt = 0
            self._failing = False
            if claimed is not None:
                _unlink(claimed)
            self._settled()
            return True
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
            return True
        self._attempt += 1
        cap = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * 2 ** min(self._attempt, 30))
        delay = wait if wait is not None else self._random.uniform(0, cap)  # full jitter
        with self._cond:
            if not self._stopping:
                self._cond.wait(timeout=delay)
        return True

    def _settled(self) -> None:
        """The batch in hand was sent, dropped or put back: it is no longer in flight."""
        self._inflight = None
        self._inflight_claim = None

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
        with self._cond:
            self._cond.notify_all()
            if not self._stopping:
                self._cond.wait(timeout=RECOVERY_PAUSE_S)

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
        """POST one batch: ("sent" | "rejected" | "retry" | "pause", seconds to wait)."""
        if self._session is None:
            self._session = requests.Session()
        body = gzip.compress(batch.body, 6) if self.settings.gzip else batch.body
        headers = {
            "Content-Type": batch.content_type,
            "User-Agent": f"spanlytics/{VERSION}",
            **dict(self.settings.headers),
        }
        if self.settings.gzip:
            headers["Content-Encoding"] = "gzip"
        timeout = (self.settings.connect_timeout_s, self.settings.read_timeout_s)
        url = self.settings.base_url + batch.path
        try:
            # Never follow a redirect: requests would re-send the POST as a GET without a body.
            response = self._session.post(
                url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            )
            response.close()
        except (requests.RequestException, OSError) as exc:  # the network: try again later
            _log.warning(
                f"send.error.{self.name}",
                "spanlytics %s: delivery failed (%s); will retry",
                self.name,
                type(exc).__name__,
            )
            return "retry", None
        except Exception as exc:  # not the network: this batch would fail the same way again
            self._session.close()
            self._session = None
            self._counters["dropped_failed"] += batch.records
            _log.failure(
                f"send.failed.{self.name}", f"spanlytics {self.name}: could not send a batch; dropped", exc
            )
            return "rejected", None
        status = response.status_code
        if 200 <= status < 300:
            self._counters["batches_sent"] += 1
            self._counters["records_sent"] += batch.records
            self._counters["bytes_sent"] += len(body)
            return "sent", None
        if self.on_status is not None:
            try:
                outcome = self.on_status(batch, response)
            except Exception as exc:  # a destination's bug must not stop delivery
                _log.failure(f"send.hook.{self.name}", f"spanlytics {self.name}: status hook failed", exc)
                outcome = None
            if outcome == "rejected":
                self._counters["dropped_rejected"] += batch.records
            if outcome is not None:
                return outcome, None
        if 300 <= status < 400:
            self._counters["dropped_redirected"] += batch.records
            location = response.headers.get("Location")
            _log.error(
                f"send.redirect.{self.name}.{status}",
                "spanlytics %s: %s answered HTTP %d, a redirect to %s; deliveries never follow "
                "redirects (the POST would arrive as a GET without its body): configure the "
                "final URL. Batch dropped.",
                self.name,
                host_of(self.settings.base_url),
                status,
                host_of(urljoin(url, location)) if location else "no Location",
            )
            return "rejected", None
        if status in RETRY_STATUSES or status >= 500:
            _log.warning(f"send.status.{self.name}", "spanlytics %s: HTTP %d; will retry", self.name, status)
            return "retry", retry_after_s(response.headers.get("Retry-After"))
        if status in self.settings.pause_statuses:
            _log.error(
                f"send.pause.{self.name}.{status}",
                "spanlytics %s: HTTP %d (%s): check the API key / client id; pausing delivery for %.0fs",
                self.name,
                status,
                response.reason or "",
                self.settings.pause_s,
            )
            return "pause", None
        self._counters["dropped_rejected"] += batch.records
        _log.warning(
            f"send.rejected.{self.name}.{status}",
            "spanlytics %s: HTTP %d (%s); batch dropped",
            self.name,
            status,
            (response.reason or "")[:80],
        )
        return "rejected", None

    # -- lifecycle ----------------------------------------------------------------------------

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until the queue is delivered; at the deadline spool what is left."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._cond.notify_all()
            while (self._queue or self._inflight is not None) and not self._failing and self._working():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(timeout=min(remaining, 0.05))
            done = not self._queue and self._inflight is None
        if not done:
            self._spool_queue()
        return done

    def _working(self) -> bool:
        """The worker is alive (or not started yet): a dead thread's queue never empties."""
        thread = self._thread
        return thread is None or thread.is_alive()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued within ``timeout_s``; spool the rest; stop the worker."""
        self.force_flush(timeout_s)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(min(timeout_s, self.settings.read_timeout_s + 1))
        self._spool_queue()
        inflight = self._inflight
        if inflight is not None and thread is not None and thread.is_alive():
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
