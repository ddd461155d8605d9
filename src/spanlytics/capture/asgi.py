"""ASGI capture middleware: a tee on ``receive`` and ``send`` that never changes a message.

Install it *outside* the OpenTelemetry ASGI middleware (``spanlytics.instrument_app`` does)::

    app = ASGICaptureMiddleware(OpenTelemetryMiddleware(app))

Every message is passed on as the same object, in the same order, with the same timing:
streaming responses still stream, client disconnects and exceptions propagate unchanged.
Headers are read only when they are a list or a tuple: anything else (a generator) may be
readable once, and that once belongs to the server.
It also runs the process-wide lifespan shutdown hook (spanlytics flushes there), because
uvicorn re-raises SIGTERM after a graceful shutdown and ``atexit`` hooks never run there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any
from urllib.parse import quote

from spanlytics._throttle import ThrottledLogger
from spanlytics.capture.lifecycle import begin_request, link_current_server_span, note_consumer_hints
from spanlytics.capture.options import PROCESS_CAPTURE, CaptureOptions
from spanlytics.capture.store import STORE, Capture, enter_capture, exit_capture

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_log = ThrottledLogger(logging.getLogger("spanlytics.capture.asgi"))


def _decode_headers(raw: Any) -> tuple[tuple[str, str], ...]:
    return tuple((bytes(k).decode("latin-1").lower(), bytes(v).decode("latin-1")) for k, v in raw or ())


def _readable(raw: Any) -> Any:
    """``raw`` if it can be read without being used up, else ``()``.

    ASGI allows headers as *any* iterable, and a generator can be iterated once: if the tee
    read it, the server would send no headers at all (no Content-Type, no Content-Length).
    The servers take what the app gave them (uvicorn calls ``list()`` on it, hypercorn
    iterates it); only a list or a tuple is ours to read too. The rest is not captured.
    """
    return raw if type(raw) is list or type(raw) is tuple else ()


def _deferred_headers(raw: Any) -> Callable[[], tuple[tuple[str, str], ...]]:
    """Copy the server's header list now (the app may change it in place), decode it later:
    on the request path only the copy is made."""
    return partial(_decode_headers, list(_readable(raw)))


def _declared_size(raw: Any) -> int | None:
    for name, value in raw:
        # len() first: most names are not 14 bytes long, and it copies nothing
        if len(name) == 14 and bytes(name).lower() == b"content-length":
            return int(value) if bytes(value).isdigit() else None
    return None


def new_capture(scope: Scope, options: CaptureOptions) -> Capture:
    raw_headers = _readable(scope.get("headers"))
    client = scope.get("client")
    path = scope.get("raw_path")
    return Capture(
        method=str(scope.get("method", "GET")),
        path=bytes(path).decode("latin-1").split("?", 1)[0] if path else quote(str(scope.get("path", "/"))),
        query=bytes(scope.get("query_string") or b"").decode("latin-1"),
        scheme=str(scope.get("scheme", "http")),
        request_headers=partial(_decode_headers, list(raw_headers)),
        bodies=options.capture_bodies,
        limit=options.max_body_bytes,
        declared_request_size=_declared_size(raw_headers),
        client_ip=str(client[0]) if client else None,
        http_version=str(scope.get("http_version", "1.1")),
        admitted_by=options.exclusions,
    )


class ASGICaptureMiddleware:
    """Records request/response headers and bodies (up to a cap) for spanlytics.

    >>> app = ASGICaptureMiddleware(OpenTelemetryMiddleware(my_asgi_app))  # doctest: +SKIP
    """

    def __init__(self, app: ASGIApp, options: CaptureOptions | None = None) -> None:
        self.app = app
        self._options = options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await capture_asgi(self.app, scope, receive, send, self._options)


def _user_agent(scope: Scope) -> str | None:
    for name, value in _readable(scope.get("headers")):
        if name == b"user-agent":
            return bytes(value).decode("latin-1")
    return None


async def capture_asgi(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, options: CaptureOptions | None = None
) -> None:
    """Run ``app`` for one ASGI connection, capturing it when it is an HTTP request."""
    kind = scope.get("type")
    if kind == "lifespan":
        await app(scope, receive, _on_shutdown(send))
        return
    if kind != "http":
        await app(scope, receive, send)
        return
    options = options or PROCESS_CAPTURE.options()
    capture: Capture | None = None
    try:
        if begin_request(options, str(scope.get("path", "/")), _user_agent(scope)):
            capture = new_capture(scope, options)
            token = enter_capture(capture)
            link_current_server_span(capture)
    except Exception as exc:
        _log.failure("asgi.start", "request capture could not start; request not captured", exc)
        if capture is not None:
            exit_capture(token)
        capture = None
    if capture is None:  # the app runs exactly once, outside anything that could catch its errors
        await app(scope, receive, send)
        return

    received = 0

    async def receive_tee() -> Message:
        nonlocal received
        message = await receive()
        if message.get("type") == "http.request":
            body = message.get("body") or b""
            received += len(body)
            capture.add_request_chunk(body, received)
        return message

    async def send_tee(message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.body":
            capture.add_response_chunk(message.get("body") or b"")
        elif kind == "http.response.start":
            capture.status = message.get("status")
            capture.response_headers = _deferred_headers(message.get("headers"))
        await send(message)

    try:
        await app(scope, receive_tee, send_tee)
    finally:
        route = scope.get("route")
        capture.route = getattr(route, "path", None)
        note_consumer_hints(capture, options, scope.get("state"))
        exit_capture(token)
        STORE.finish(capture)


def _on_shutdown(send: Send) -> Send:
    async def send_wrapper(message: Message) -> None:
        if message.get("type") in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            PROCESS_CAPTURE.lifespan_shutdown()
        await send(message)

    return send_wrapper
