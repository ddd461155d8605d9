"""Rate-limited logging, so that a misbehaving input can never flood the app's logs."""

from __future__ import annotations

import logging
import threading
import time
import weakref

from spanlytics._process import on_reset

DEFAULT_INTERVAL_S = 60.0

INSTANCES: weakref.WeakSet[ThrottledLogger] = weakref.WeakSet()
"""Every throttled logger, so that ``reset_process()`` can give each a clean slate."""


def reset_all() -> None:
    """Forget what every throttled logger logged: the next message of each key is shown."""
    for logger in list(INSTANCES):
        logger.reset()


on_reset(reset_all)


class ThrottledLogger:
    """Logs each message key at most once per interval, then says how many were suppressed.

    >>> log = ThrottledLogger(logging.getLogger("spanlytics.example"))
    >>> log.warning("body.decode", "could not decode a body")
    """

    __slots__ = ("__weakref__", "_interval", "_lock", "_logger", "_seen")

    def __init__(self, logger: logging.Logger, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self._logger = logger
        self._interval = interval_s
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int]] = {}
        INSTANCES.add(self)

    def reset(self) -> None:
        """Forget what was logged: the next message of each key is shown."""
        with self._lock:
            self._seen.clear()

    def _admit(self, key: str) -> int | None:
        """Return the number of suppressed messages if this one may be logged, else None."""
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._seen.get(key, (-self._interval - 1.0, 0))
            if now - last < self._interval:
                self._seen[key] = (last, suppressed + 1)
                return None
            if len(self._seen) > 1024:  # keys are code-defined, but stay bounded regardless
                self._seen.clear()
            self._seen[key] = (now, 0)
            return suppressed

    def _log(self, level: int, key: str, msg: str, args: tuple[object, ...]) -> None:
        suppressed = self._admit(key)
        if suppressed is None or not self._logger.isEnabledFor(level):
            return
        if suppressed:
            msg = f"{msg} ({suppressed} similar messages suppressed)"
        self._logger.log(level, msg, *args)

    def warning(self, key: str, msg: str, *args: object) -> None:
        self._log(logging.WARNING, key, msg, args)

    def error(self, key: str, msg: str, *args: object) -> None:
        self._log(logging.ERROR, key, msg, args)

    def failure(self, key: str, msg: str, exc: BaseException) -> None:
        """Log that ``exc`` happened, naming its type and where it was raised.

        The exception's message and locals are left out on purpose: they may hold request
        data (a token in a ``ValueError``), and nothing we log may leak a secret.
        """
        where = ""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:
            where = f" at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
        self._log(logging.WARNING, key, f"{msg} ({type(exc).__qualname__}{where})", ())
