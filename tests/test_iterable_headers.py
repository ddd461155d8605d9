"""Headers given as a one-shot iterable reach the server untouched (issue 12, item 10).

ASGI allows response headers as any iterable and uvicorn, hypercorn and gunicorn read any
iterable: a tee that iterated a generator first left the server nothing to send, and the
client got no Content-Type and no Content-Length.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from spanlytics.capture.asgi import capture_asgi
from spanlytics.capture.options import CaptureOptions
from spanlytics.capture.wsgi import capture_wsgi
from tests.support.iterable_header_apps import BODY
from tests.support.servers import free_port, gunicorn_argv, raw_http, start_server, uvicorn_argv

SERVERS = {
    "asgi-uvicorn": lambda port: uvicorn_argv("tests.support.iterable_header_apps:asgi_app", port),
    "wsgi-gunicorn": lambda port: gunicorn_argv("tests.support.iterable_header_apps:wsgi_app", port),
}
REQUEST = b"POST /anything HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc"
_DATE = re.compile(rb"\r\ndate: [^\r]*", re.IGNORECASE)


def _response(server: str, variant: str, tmp_path: Path) -> bytes:
    port = free_port()
    proc = start_server(
        SERVERS[server](port),
        port=port,
        log_dir=tmp_path,
        env={"SPANLYTICS_TEST_VARIANT": variant, "SPANLYTICS_LOCAL_PATH": str(tmp_path / f"{variant}.db")},
    )
    try:
        return _DATE.sub(b"", raw_http(port, REQUEST))
    finally:
        proc.stop()


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_generator_headers_reach_the_client_byte_for_byte(server: str, tmp_path: Path) -> None:
    plain = _response(server, "plain", tmp_path)
    captured = _response(server, "spanlytics", tmp_path)
    head, _, body = plain.partition(b"\r\n\r\n")
    assert body == BODY
    assert b"\r\ncontent-type: application/json" in head
    assert f"\r\ncontent-length: {len(BODY)}".encode() in head
    assert captured == plain


def _one_shot(pairs: list[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    yield from pairs


def test_asgi_request_headers_as_a_generator_are_left_to_the_app() -> None:
    """A middleware above us may hand on the scope's headers as a generator: the app reads them."""
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    pairs = [(b"user-agent", b"curl/8.5"), (b"content-length", b"0"), (b"x-key", b"k")]
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": _one_shot(pairs)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: MutableMapping[str, Any]) -> None:
        pass

    asyncio.run(capture_asgi(app, scope, receive, send, CaptureOptions()))
    assert seen == [pairs]


def test_wsgi_start_response_headers_as_a_generator_reach_the_server() -> None:
    given: list[list[tuple[str, str]]] = []

    def start_response(status: str, headers: Any, *exc_info: Any) -> Any:
        given.append(list(headers))
        return lambda data: None

    def app(environ: dict[str, Any], respond: Any) -> list[bytes]:
        respond("200 OK", ((k, v) for k, v in [("Content-Type", "text/plain"), ("Content-Length", "2")]))
        return [b"ok"]

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "wsgi.input": None}
    assert capture_wsgi(app, environ, start_response, CaptureOptions()) == [b"ok"]
    assert given == [[("Content-Type", "text/plain"), ("Content-Length", "2")]]
