"""What the capture middlewares do, and the request view handed to consumer callbacks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from spanlytics._throttle import ThrottledLogger
from spanlytics.capture.state import STORE, Capture, current_capture
from spanlytics.config import IdentifyConsumer, Settings
from spanlytics.consumer import RANK_CALLBACK, RANK_STATE, coerce_consumer
from spanlytics.exclusions import Exclusions

_log = ThrottledLogger(logging.getLogger("spanlytics.capture"))


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """Capture behaviour. Middlewares without explicit options follow the process-wide ones,
    which :func:`spanlytics.configure` (or the zero-code hook) sets from its settings."""

    enabled: bool = True
    capture_bodies: bool = True
    max_body_bytes: int = 64 * 1024
    identify_consumer: IdentifyConsumer | None = None
    exclusions: Exclusions = field(default_factory=Exclusions.default)
    internal_spans: bool | None = None
    """Keep the ASGI middleware's ``receive``/``send`` spans where spanlytics applies or
    tunes the instrumentation: ``None`` keeps them unless spanlytics is the only span
    processor (see :func:`spanlytics.otel.instrument.keep_internal_spans`)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> CaptureOptions:
        return cls(
            enabled=settings.enabled,
            capture_bodies=settings.capture_bodies,
            max_body_bytes=settings.max_body_bytes,
            identify_consumer=settings.identify_callback(),
            exclusions=settings.exclusions(),
            internal_spans=settings.asgi_internal_spans,
        )


_options: CaptureOptions | None = None


def process_options() -> CaptureOptions:
    """The process-wide options (resolved from the environment on first use)."""
    global _options
    if _options is None:
        _options = CaptureOptions.from_settings(Settings.resolve())
    return _options


def set_process_options(options: CaptureOptions) -> None:
    global _options
    _options = options


_deferred: tuple[Callable[[], None], ...] | None = None
_deferred_lock = threading.Lock()


def defer_until_first_request(setup: Callable[[], None]) -> None:
    """Run ``setup`` when the first request reaches a capture middleware, after any set-up
    deferred before it.

    The zero-code hook uses it when no SDK TracerProvider exists yet at start-up: the app
    may still set its own, and spanlytics must attach to that one, not pre-empt it. The
    ASGI internal-spans choice waits for it too, since it depends on the provider's
    processors (a server's lifespan start builds the middleware stack before any request).
    """
    global _deferred
    with _deferred_lock:
        _deferred = (*(_deferred or ()), setup)


def run_deferred_setup() -> None:
    global _deferred
    with _deferred_lock:
        pending, _deferred = _deferred or (), None
    for setup in pending:
        try:
            setup()
        except Exception as exc:
            _log.failure("setup.deferred", "spanlytics set-up failed; requests are not recorded", exc)


def begin_request(options: CaptureOptions, path: str, user_agent: str | None) -> bool:
    """Whether to capture this request: not when nested in a captured one, or excluded."""
    if _deferred:
        run_deferred_setup()
    if not options.enabled or current_capture() is not None:
        return False
    return not options.exclusions.excludes(path, user_agent)


@dataclass(frozen=True, slots=True)
class RequestView:
    """A read-only view of a request, given to ``identify_consumer`` callbacks.

    ``headers`` has lower-case names (the last value wins for repeated headers); ``state``
    is the ASGI scope's ``state`` dict (``request.state``) or the WSGI environ.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    client_ip: str | None
    state: Mapping[str, Any]


def link_current_server_span(capture: Capture) -> None:
    """Link ``capture`` to the current span when a server span is already open.

    The span processor normally links the capture when the server span starts inside the
    middleware. This covers the other order: the middleware installed *inside* an
    instrumentation middleware (for example when the app was instrumented after us).
    """
    span = trace.get_current_span()
    if getattr(span, "kind", None) is SpanKind.SERVER and span.is_recording():
        span_id = span.get_span_context().span_id
        capture.span = span
        capture.span_id = span_id
        STORE.register(span_id, capture)


def identify_at_end(capture: Capture, options: CaptureOptions, state: Mapping[str, Any] | None) -> None:
    """Apply the request-state and callback consumer sources once the response is done.

    Runs on the request path, so it only reads; a callback that raises or returns junk is
    logged (rate-limited, type only) and treated as "no consumer".
    """
    if state:
        try:
            # ASGI request state holds "spanlytics_consumer"; a WSGI environ the documented
            # "spanlytics.consumer" (the other spelling is accepted there too)
            value = state.get("spanlytics.consumer", state.get("spanlytics_consumer"))
            capture.offer_consumer(coerce_consumer(value), RANK_STATE)
        except Exception as exc:
            _log.failure("consumer.state", "could not read the consumer from request state", exc)
    callback = options.identify_consumer
    if callback is None:
        return
    try:
        view = RequestView(
            method=capture.method,
            path=capture.path,
            query=capture.query,
            headers=dict(capture.request_headers),
            client_ip=capture.client_ip,
            state=state or {},
        )
        capture.offer_consumer(coerce_consumer(callback(view)), RANK_CALLBACK)
    except Exception as exc:
        _log.failure("consumer.callback", "identify_consumer callback failed; no consumer", exc)
