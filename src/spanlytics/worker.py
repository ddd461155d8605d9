"""BackgroundWorker: the one daemon thread helper of spanlytics (pipeline, senders, timers).

A worker calls ``tick`` on its own thread whenever it is woken, and every ``interval_s``
otherwise. The thread starts on first use, never keeps the process alive, outlives any
exception (logged, throttled, then a pause so that a repeating error cannot spin) and starts
afresh in a forked child::

    worker = BackgroundWorker("spanlytics-exporter", pipeline.drain, interval_s=1.0)
    worker.start()           # lazily, from the first submit
    worker.wake()            # from any thread: run the tick now rather than at the interval
    worker.stop(timeout_s=5) # after the tick at hand; True when the thread has ended

A tick may return the seconds until it wants to run again (a retry's backoff, a pause);
``None`` means the regular interval. A periodic job whose interval changes passes a
function, called before each wait::

    def sync_interval_s() -> float:  # every 10 s for the first hour, then every minute
        return 10.0 if time.monotonic() - started < 3600 else 60.0

    timer = BackgroundWorker("spanlytics-apitally", sync, interval_s=sync_interval_s,
                             restart_in_child=True)

A wake during a tick is kept: the worker clears the wake before each tick, so whatever a
producer queued while the tick ran is picked up by the next one, never lost.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Callable

from spanlytics._process import reset_in_child
from spanlytics._throttle import ThrottledLogger

__all__ = ["RECOVERY_PAUSE_S", "BackgroundWorker"]

_log = ThrottledLogger(logging.getLogger("spanlytics.worker"))

RECOVERY_PAUSE_S = 1.0
"""After an unexpected error the worker waits this long, so that a repeating one cannot spin."""


_PR_SET_NAME = 15
_OS_NAME_BYTES = 15  # Linux keeps 15 bytes of a thread's name


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` at the OS level too (Linux; Python names only its own
    view of a thread before 3.14), so that ``top -H``, ``ps -L`` and ``/proc/<pid>/task/*/comm``
    show which threads are spanlytics' and what CPU they use. Best effort: never raises."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode("ascii", "replace")[:_OS_NAME_BYTES], 0, 0, 0)
    except (OSError, AttributeError, TypeError, ValueError):
        pass


class BackgroundWorker:
    """Runs ``tick`` on a daemon thread when woken and every ``interval_s`` (see the module)."""

    def __init__(
        self,
        name: str,
        tick: Callable[[], float | None],
        *,
        interval_s: float | Callable[[], float],
        on_error: Callable[[Exception], None] | None = None,
        recovery_pause_s: float = RECOVERY_PAUSE_S,
        restart_in_child: bool = False,
    ) -> None:
        """``on_error(exc)`` replaces the default warning (it names the thread and the
        exception's type and place, never its message); ``restart_in_child`` starts the
        thread again in a forked child if it ran in the parent (otherwise the next
        :meth:`start` does)."""
        self.name = name
        self._tick = tick
        self._interval_s = interval_s
        self._on_error = on_error
        self._recovery_pause_s = recovery_pause_s
        self._restart_in_child = restart_in_child
        self._stopping = False
        self._pid = -1
        self.reset_after_fork()
        reset_in_child(self, BackgroundWorker.reset_after_fork)

    def reset_after_fork(self) -> None:
        """Forget the parent's thread (it does not exist in a child) and its primitives.

        Registered with :func:`~spanlytics._process.reset_in_child`; owners that check the
        pid on their hot path (a fork that ran no at-fork hooks, as uWSGI's can) call it too.
        Does nothing when already done in this process. A stopped worker stays stopped.
        """
        pid = os.getpid()
        if pid == self._pid:
            return
        was_started = self._pid != -1 and getattr(self, "_thread", None) is not None
        self._pid = pid
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if was_started and self._restart_in_child:
            self.start()

    @property
    def started(self) -> bool:
        """Whether the thread was started in this process (it may have stopped since)."""
        return self._thread is not None

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called: a tick that loops checks this between items."""
        return self._stopping

    @property
    def working(self) -> bool:
        """Not started yet, or its thread is alive: work handed to it will be done."""
        thread = self._thread
        return thread is None or thread.ident is None or thread.is_alive()  # ident: not started yet

    def start(self) -> None:
        """Start the thread, unless it runs already or the worker was stopped."""
        if self._thread is not None or self._stopping:
            return
        with self._start_lock:
            if self._thread is None and not self._stopping:
                # known before it runs: a tick may ask whether it runs on this very thread
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                try:
                    self._thread.start()
                except BaseException:
                    self._thread = None
                    raise

    def wake(self) -> None:
        """Run the tick as soon as the thread is free (starting the thread if needed)."""
        self._wake.set()
        if self._thread is None:
            self.start()

    def stop(self, timeout_s: float = 0.0) -> bool:
        """Stop after the tick at hand, waiting up to ``timeout_s`` for the thread to end.

        True when no thread runs any more (or none ever ran). Idempotent; from the worker's
        own thread (a tick that stops its worker) it only asks and returns False.
        """
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is None:
            return True
        if thread is threading.current_thread():
            return False
        thread.join(timeout_s)
        return not thread.is_alive()

    def _next_wait_s(self, asked: float | None) -> float:
        if asked is not None:
            return asked
        interval = self._interval_s
        return interval() if callable(interval) else interval

    def _run(self) -> None:
        name_os_thread(self.name)
        wake = self._wake
        wait_s: float | None = None
        while True:
            try:
                wake.wait(self._next_wait_s(wait_s))
                wake.clear()  # before the tick: a wake during the tick means another tick
                if self._stopping:
                    return
                wait_s = self._tick()
            except Exception as exc:  # the thread must outlive any one tick
                self._failed(exc)
                wait_s = self._recovery_pause_s

    def _failed(self, exc: Exception) -> None:
        try:
            if self._on_error is not None:
                self._on_error(exc)
                return
        except Exception as hook_exc:  # the error hook's own bug: report that one instead
            exc = hook_exc
        _log.failure(f"worker.{self.name}", f"{self.name}: background worker error; it goes on", exc)
