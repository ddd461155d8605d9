"""What the capture middlewares do, and the process-wide capture set-up.

:class:`CaptureOptions` is one middleware's behaviour. A middleware without explicit options
follows the process-wide ones, kept with the set-up deferred to the first request in
:data:`PROCESS_CAPTURE`: the one place of capture's process state, emptied by
:func:`spanlytics._process.reset_process`.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spanlytics._process import on_reset
from spanlytics._throttle import ThrottledLogger
from spanlytics.config import IdentifyConsumer, Settings
from spanlytics.exclusions import Exclusions

_log = ThrottledLogger(logging.getLogger("spanlytics.capture"))
_consumer_log = ThrottledLogger(logging.getLogger("spanlytics.consumer"))

_CALLBACK_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_callback_spec(spec: str) -> bool:
    """Whether a ``SPANLYTICS_CONSUMER_FROM`` entry names a ``module:function`` callback."""
    return _CALLBACK_SPEC.match(spec.strip()) is not None


def load_callback(specs: Sequence[str]) -> Callable[[Any], object] | None:
    """The first ``module:function`` entry of ``SPANLYTICS_CONSUMER_FROM``, imported."""
    for raw_spec in specs:
        spec = raw_spec.strip()
        kind = spec.partition(":")[0].lower()
        if kind in ("header", "jwt-claim") or not is_callback_spec(spec):
            continue
        module_name, _, attr = spec.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except Exception as exc:
            _consumer_log.failure("consumer.callback.load", f"cannot load consumer callback {spec}", exc)
            return None
        if callable(target):
            return target  # type: ignore[no-any-return]
        _consumer_log.warning("consumer.callback.type", "consumer callback %s is not callable", spec)
    return None


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """Capture behaviour. Middlewares without explicit options follow the process-wide ones,
    which :func:`spanlytics.configure` (or the zero-code hook) sets from its settings."""

    enabled: bool = True
    capture_bodies: bool = True
    max_body_bytes: int = 64 * 1024
    identify_consumer: IdentifyConsumer | None = None
    """Called at the end of each request with a :class:`~spanlytics.RequestView`; what it
    returns is validated in the background (a Consumer, an identifier, a mapping or None)."""
    exclusions: Exclusions = field(default_factory=Exclusions.default)
    internal_spans: bool | None = None
    """Keep the ASGI middleware's ``receive``/``send`` spans where spanlytics applies or
    tunes the instrumentation: ``None`` keeps them unless spanlytics is the only span
    processor (see :func:`spanlytics.otel.instrument.keep_internal_spans`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> CaptureOptions:
        """The options ``settings`` ask for; the callback is the code-given one, else a
        ``module:function`` entry of ``SPANLYTICS_CONSUMER_FROM``."""
        callback = settings.identify_consumer
        return cls(
            enabled=settings.enabled,
            capture_bodies=settings.capture_bodies,
            max_body_bytes=settings.max_body_bytes,
            identify_consumer=callback if callback is not None else load_callback(settings.consumer_from),
            exclusions=Exclusions.from_settings(settings),
            internal_spans=settings.asgi_internal_spans,
        )


class ProcessCapture:
    """Capture's process-wide state: the default options, the set-up deferred to the first
    request, and what to run when an ASGI app's lifespan shuts down.

    Options and deferred set-up are forgotten by :func:`spanlytics._process.reset_process`
    (not in a forked child: a worker forked after ``configure()`` keeps its options, and a
    set-up deferred before the fork runs in each worker). The shutdown hook is wiring, set
    once by the layer that knows how to flush (capture imports nothing above it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._options: CaptureOptions | None = None
        self.deferred: tuple[Callable[[], None], ...] = ()
        """Read on the request path without the lock: empty once nothing waits."""
        self._on_lifespan_shutdown: Callable[[], object] | None = None

    def options(self) -> CaptureOptions:
        """The process-wide options (resolved from the environment on first use)."""
        options = self._options
        if options is None:
            options = self._options = CaptureOptions.from_settings(Settings.resolve())
        return options

    def set_options(self, options: CaptureOptions) -> None:
        self._options = options

    def defer(self, setup: Callable[[], None]) -> None:
        """Run ``setup`` when the first request reaches a capture middleware, after any set-up
        deferred before it.

        The zero-code hook uses it when no SDK TracerProvider exists yet at start-up: the app
        may still set its own, and spanlytics must attach to that one, not pre-empt it. The
        ASGI internal-spans choice waits for it too, since it depends on the provider's
        processors (a server's lifespan start builds the middleware stack before any request).
        """
        with self._lock:
            self.deferred = (*self.deferred, setup)

    def run_deferred(self) -> None:
        with self._lock:
            pending, self.deferred = self.deferred, ()
        for setup in pending:
            try:
                setup()
            except Exception as exc:
                _log.failure("setup.deferred", "spanlytics set-up failed; requests are not recorded", exc)

    def on_lifespan_shutdown(self, hook: Callable[[], object] | None) -> Callable[[], object] | None:
        """Run ``hook`` when an ASGI app's lifespan shuts down (``spanlytics`` flushes there:
        uvicorn re-raises SIGTERM after a graceful shutdown, and exit hooks never run).
        Returns the hook it replaces."""
        previous, self._on_lifespan_shutdown = self._on_lifespan_shutdown, hook
        return previous

    def lifespan_shutdown(self) -> None:
        hook = self._on_lifespan_shutdown
        if hook is not None:
            try:
                hook()
            except Exception as exc:  # the server's shutdown must go on
                _log.failure("lifespan.shutdown", "spanlytics could not flush at shutdown", exc)

    def reset(self) -> None:
        with self._lock:
            self._options = None
            self.deferred = ()


PROCESS_CAPTURE = ProcessCapture()
on_reset(PROCESS_CAPTURE.reset)
