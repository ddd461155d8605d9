"""Raw ASGI and WSGI apps that hand the server their headers as a one-shot generator.

Both protocols allow it in practice (ASGI: "an iterable"; gunicorn and uvicorn read any
iterable), so a tee that iterated the headers before the server would leave it none to send.
``SPANLYTICS_TEST_VARIANT`` picks ``plain`` (the app alone) or ``spanlytics`` (the capture
middleware around it, spanlytics configured).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

VARIANT = os.environ.get("SPANLYTICS_TEST_VARIANT", "spanlytics")
BODY = b'{"generated": "headers", "bytes": "\xc3\xa9t\xc3\xa9"}'


def _byte_headers() -> Iterator[tuple[bytes, bytes]]:
    yield b"content-type", b"application/json"
    yield b"content-length", str(len(BODY)).encode()
    yield b"x-generated", b"yes"


async def _asgi_app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": _byte_headers()})
    await send({"type": "http.response.body", "body": BODY})


def _wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["wsgi.input"].read()
    headers = ((k.decode(), v.decode()) for k, v in _byte_headers())
    start_response("200 OK", headers)
    return iter([BODY])  # an iterator, not a list: also read once, by the server


def _setup() -> tuple[Any, Any]:
    if VARIANT == "plain":
        return _asgi_app, _wsgi_app
    import spanlytics
    from spanlytics.capture.asgi import ASGICaptureMiddleware
    from spanlytics.capture.wsgi import WSGICaptureMiddleware

    spanlytics.configure()
    return ASGICaptureMiddleware(_asgi_app), WSGICaptureMiddleware(_wsgi_app)


asgi_app, wsgi_app = _setup()
