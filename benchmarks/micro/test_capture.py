"""The capture tees' cost on the request path: one POST with a 1 KB body each way, with and without.

The apps are trivial and in-process, so the gap between ``bare`` and ``capture`` in a group
is the tee. No server span is open, so captures never enter the store (the span processor's
linking is not part of the tee); the tests check that nothing accumulated there.

The ASGI coroutine is driven by hand: the app never suspends (its ``receive`` and ``send``
return at once), so one ``send(None)`` runs it to the end without an event loop, whose
per-request overhead would otherwise blur the difference.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.bench_background import REQUEST_HEADERS
from benchmarks.micro.workload import json_body
from spanlytics.capture import ASGICaptureMiddleware, CaptureOptions, WSGICaptureMiddleware
from spanlytics.capture.store import STORE, Capture, current_capture

REQUEST_BODY = json_body(1, "password")
RESPONSE_BODY = json_body(1, "access_token")
OPTIONS = CaptureOptions()  # explicit, so the process-wide options (and the environment) play no part


def run_to_completion(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise AssertionError("the app suspended: it needs an event loop")


def check_capture(capture: Capture | None) -> None:
    assert capture is not None and capture.done and capture.status == 201
    assert bytes(capture.request_body) == REQUEST_BODY and capture.request_size == 1024
    assert bytes(capture.response_body) == RESPONSE_BODY and capture.response_size == 1024
    assert capture.header("authorization") == "Bearer sk_live_abcdef0123456789"
    assert len(STORE) == 0


# --- ASGI ---------------------------------------------------------------------------------

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/orders/42",
    "raw_path": b"/orders/42",
    "query_string": b"expand=items",
    "headers": [(name.encode(), value.encode()) for name, value in REQUEST_HEADERS],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}
REQUEST = {"type": "http.request", "body": REQUEST_BODY, "more_body": False}
START = {
    "type": "http.response.start",
    "status": 201,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")],
}
BODY = {"type": "http.response.body", "body": RESPONSE_BODY, "more_body": False}


class EchoASGI:
    """Reads the request body, answers 201 with a 1 KB body, and notes what it saw."""

    def __init__(self) -> None:
        self.received = b""
        self.capture: Capture | None = None

    async def __call__(self, scope: Any, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        message = await receive()
        self.received = message["body"]
        self.capture = current_capture()
        await send(START)
        await send(BODY)


async def receive() -> dict[str, Any]:
    return REQUEST


class Sent:
    def __init__(self) -> None:
        self.last: Any = None

    async def __call__(self, message: Any) -> None:
        self.last = message


@pytest.mark.benchmark(group="capture-asgi")
def test_asgi_bare(benchmark: BenchmarkFixture) -> None:
    app, sent = EchoASGI(), Sent()
    benchmark(lambda: run_to_completion(app(SCOPE, receive, sent)))
    assert app.received == REQUEST_BODY and sent.last is BODY and app.capture is None


@pytest.mark.benchmark(group="capture-asgi")
def test_asgi_capture(benchmark: BenchmarkFixture) -> None:
    app, sent = EchoASGI(), Sent()
    captured = ASGICaptureMiddleware(app, OPTIONS)
    benchmark(lambda: run_to_completion(captured(SCOPE, receive, sent)))
    assert app.received == REQUEST_BODY and sent.last is BODY
    check_capture(app.capture)
    assert current_capture() is None


# --- WSGI ---------------------------------------------------------------------------------

ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "POST",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/orders/42",
    "QUERY_STRING": "expand=items",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "CONTENT_TYPE": "application/json",
    "CONTENT_LENGTH": "1024",
    **{f"HTTP_{name.upper().replace('-', '_')}": value for name, value in REQUEST_HEADERS[3:]},
    "HTTP_HOST": "127.0.0.1:8000",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": io.StringIO(),
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}
RESPONSE_HEADERS = [("Content-Type", "application/json"), ("Content-Length", "1024")]


class EchoWSGI:
    """Reads the request body, answers 201 with a 1 KB body, and notes what it saw."""

    def __init__(self) -> None:
        self.received = b""
        self.capture: Capture | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.received = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        self.capture = current_capture()
        start_response("201 Created", RESPONSE_HEADERS)
        return [RESPONSE_BODY]


def start_response(
    status: str, headers: list[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], None]:
    return lambda data: None


def request(app: Callable[[dict[str, Any], Any], Iterable[bytes]]) -> Iterable[bytes]:
    """One request as a server makes it: a fresh environ with its own input stream."""
    environ = dict(ENVIRON)
    environ["wsgi.input"] = io.BytesIO(REQUEST_BODY)
    return app(environ, start_response)


@pytest.mark.benchmark(group="capture-wsgi")
def test_wsgi_bare(benchmark: BenchmarkFixture) -> None:
    app = EchoWSGI()
    body = benchmark(request, app)
    assert body == [RESPONSE_BODY] and app.received == REQUEST_BODY and app.capture is None


@pytest.mark.benchmark(group="capture-wsgi")
def test_wsgi_capture(benchmark: BenchmarkFixture) -> None:
    app = EchoWSGI()
    body = benchmark(request, WSGICaptureMiddleware(app, OPTIONS))
    assert body == [RESPONSE_BODY] and app.received == REQUEST_BODY
    check_capture(app.capture)
    assert current_capture() is None
