"""What both capture middlewares do at the start and at the end of a request.

At the end they only *record* the consumer hints (the request-state value and what the
``identify_consumer`` callback returns): validating them and choosing between the sources is
the background's job (:mod:`spanlytics.consumer.resolve`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from spanlytics._throttle import ThrottledLogger
from spanlytics.capture.options import PROCESS_CAPTURE, CaptureOptions
from spanlytics.capture.store import STORE, Capture, current_capture

_log = ThrottledLogger(logging.getLogger("spanlytics.capture"))


def begin_request(options: CaptureOptions, path: str, user_agent: str | None) -> bool:
    """Whether to capture this request: not when nested in a captured one, or excluded."""
    if PROCESS_CAPTURE.deferred:
        PROCESS_CAPTURE.run_deferred()
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


def note_consumer_hints(capture: Capture, options: CaptureOptions, state: Mapping[str, Any] | None) -> None:
    """Record the request-state consumer and the callback's answer once the response is done.

    Runs on the request path, so it only reads and stores: the values are validated in the
    background. A callback that raises is logged (rate-limited, type only) and counts as
    "no consumer"; it never raises into the app.
    """
    if state:
        try:
            # ASGI request state holds "spanlytics_consumer"; a WSGI environ the documented
            # "spanlytics.consumer" (the other spelling is accepted there too)
            capture.state_consumer = state.get("spanlytics.consumer", state.get("spanlytics_consumer"))
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
        capture.callback_consumer = callback(view)
    except Exception as exc:
        _log.failure("consumer.callback", "identify_consumer callback failed; no consumer", exc)
