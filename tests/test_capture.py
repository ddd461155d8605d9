"""capture/: the ASGI and WSGI tees pass everything through untouched and stay bounded."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import pytest

from spanlytics.capture import ASGICaptureMiddleware, CaptureOptions, WSGICaptureMiddleware
from spanlytics.capture.store import Capture, CaptureStore, current_capture

OPTIONS = CaptureOptions(max_body_bytes=8)


# --- ASGI -------------------------------------------------------------------------------


def run_asgi(app: Any, scope: dict[str, Any], incoming: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    sent: list[Any] = []
    received: list[Any] = []

    async def receive() -> dict[str, Any]:
        message = incoming.pop(0) if incoming else {"type": "http.disconnect"}
        return message

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        await app(scope, receive, send)

    asyncio.run(main())
    return sent, received


def http_scope(**extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/up",
        "raw_path": b"/up",
        "query_string": b"a=1",
        "scheme": "http",
        "http_version": "1.1",
        "client": ("127.0.0.1", 5000),
        "headers": [(b"host", b"x"), (b"content-type", b"text/plain"), (b"content-length", b"12")],
        **extra,
    }


def test_asgi_passes_the_same_message_objects_in_order() -> None:
    seen_by_app: list[Any] = []
    captures: list[Capture | None] = []
    start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
    chunks = [
        {"type": "http.response.body", "body": b"hello ", "more_body": True},
        {"type": "http.response.body", "body": b"world!!!!", "more_body": False},
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        captures.append(current_capture())
        seen_by_app.append(await receive())
        seen_by_app.append(await receive())
        await send(start)
        for chunk in chunks:
            await send(chunk)

    incoming = [
        {"type": "http.request", "body": b"abcdef", "more_body": True},
        {"type": "http.request", "body": b"ghijkl", "more_body": False},
    ]
    originals = list(incoming)
    sent, _ = run_asgi(ASGICaptureMiddleware(app, OPTIONS), http_scope(), incoming)
    assert seen_by_app == originals and all(a is b for a, b in zip(seen_by_app, originals, strict=True))
    assert sent == [start, *chunks] and all(a is b for a, b in zip(sent, [start, *chunks], strict=True))
    capture = captures[0]
    assert capture is not None and capture.done
    assert bytes(capture.request_body) == b"abcdefgh" and capture.request_truncated
    assert capture.request_size == 12
    assert bytes(capture.response_body) == b"hello wo" and capture.response_truncated
    assert capture.response_size == 15 and capture.status == 200
    assert capture.query == "a=1" and capture.client_ip == "127.0.0.1"
    assert current_capture() is None


def test_asgi_exceptions_propagate_and_capture_finishes() -> None:
    captures: list[Capture | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        captures.append(current_capture())
        raise RuntimeError("app bug")

    with pytest.raises(RuntimeError, match="app bug"):
        run_asgi(ASGICaptureMiddleware(app, OPTIONS), http_scope(), [])
    assert captures[0] is not None and captures[0].done


def test_asgi_other_scopes_pass_through() -> None:
    calls: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append((scope["type"], receive, send))

    scope = {"type": "websocket", "path": "/ws"}
    run_asgi(ASGICaptureMiddleware(app, OPTIONS), scope, [])
    assert calls[0][0] == "websocket"


def test_asgi_disabled_does_nothing() -> None:
    captures: list[Capture | None] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        captures.append(current_capture())

    run_asgi(ASGICaptureMiddleware(app, CaptureOptions(enabled=False)), http_scope(), [])
    assert captures == [None]


# --- WSGI -------------------------------------------------------------------------------


def environ(body: bytes = b"", **extra: Any) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/up",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "q=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "x",
        "HTTP_X_CONSUMER_ID": "acme",
        "wsgi.input": io.BytesIO(body),
        **extra,
    }


def test_wsgi_input_stays_fully_readable_in_every_way() -> None:
    body = b"line one\nline two\nline three\n"
    read: dict[str, Any] = {}
    captures: list[Capture | None] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        stream = env["wsgi.input"]
        read["first"] = stream.readline()
        read["two"] = stream.read(4)
        read["lines"] = stream.readlines()
        captures.append(current_capture())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    result = WSGICaptureMiddleware(app, CaptureOptions(max_body_bytes=1000))(environ(body), lambda *a: None)
    assert read == {"first": b"line one\n", "two": b"line", "lines": [b" two\n", b"line three\n"]}
    assert result == [b"ok"]
    capture = captures[0]
    assert capture is not None and bytes(capture.request_body) == body
    assert capture.header("x-consumer-id") == "acme" and capture.header("content-type") == "text/plain"
    assert capture.done and capture.status == 200


def test_wsgi_list_response_is_returned_as_the_same_object() -> None:
    payload = [b"a", b"b"]

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("201 Created", [])
        return payload

    assert WSGICaptureMiddleware(app, OPTIONS)(environ(), lambda *a: None) is payload


class ClosingIterable:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        self.closed = True


def test_wsgi_streaming_close_is_propagated_and_finishes() -> None:
    body = ClosingIterable([b"12345", b"67890", b"abc"])
    captures: list[Capture | None] = []
    written: list[bytes] = []

    def app(env: dict[str, Any], start_response: Any) -> ClosingIterable:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w")
        captures.append(current_capture())
        return body

    result = WSGICaptureMiddleware(app, OPTIONS)(environ(), lambda *a: written.append)
    capture = captures[0]
    assert capture is not None and not capture.done  # still streaming
    assert list(result) == [b"12345", b"67890", b"abc"]
    assert written == [b"w"]
    result.close()  # type: ignore[attr-defined]
    assert body.closed and capture.done
    assert capture.response_size == 14 and bytes(capture.response_body) == b"w1234567"


def test_wsgi_exception_propagates_and_finishes() -> None:
    captures: list[Capture | None] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        captures.append(current_capture())
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        WSGICaptureMiddleware(app, OPTIONS)(environ(), lambda *a: None)
    assert captures[0] is not None and captures[0].done and current_capture() is None


def test_store_is_bounded_and_parks_until_finish() -> None:
    store = CaptureStore(max_entries=3)
    captures = [Capture("GET", "/", "", "http", (), bodies=True, limit=4) for _ in range(5)]
    for i, capture in enumerate(captures):
        store.register(i, capture)
    assert len(store) == 3 and store.evicted == 2
    assert store.take(0) is None and store.take(4) is captures[4]
    resumed: list[int] = []
    assert store.park(captures[3], lambda: resumed.append(3))
    store.finish(captures[3])
    assert resumed == [3]
    assert not store.park(captures[3], lambda: resumed.append(99))  # already finished
    assert resumed == [3]


@pytest.mark.parametrize("path", ["/up", "/healthz"])
def test_asgi_app_runs_once_when_nested_or_excluded_and_raising(path: str) -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        raise RuntimeError("app bug")

    nested = ASGICaptureMiddleware(ASGICaptureMiddleware(app, OPTIONS), OPTIONS)
    with pytest.raises(RuntimeError, match="app bug"):
        run_asgi(nested, http_scope(path=path, raw_path=path.encode()), [])
    assert calls == [path]


@pytest.mark.parametrize("path", ["/up", "/healthz"])
def test_wsgi_app_runs_once_when_nested_or_excluded_and_raising(path: str) -> None:
    calls: list[str] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append(env["PATH_INFO"])
        raise ValueError("boom")

    nested = WSGICaptureMiddleware(WSGICaptureMiddleware(app, OPTIONS), OPTIONS)
    with pytest.raises(ValueError, match="boom"):
        nested(environ(PATH_INFO=path), lambda *a: None)
    assert calls == [path]
    assert current_capture() is None


class ReadOnlyStream:
    """A wsgi.input with nothing but read(), as PEP 3333 allows."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, *args: Any) -> bytes:
        return self._data.read(*args)


@pytest.mark.parametrize("make_stream", [io.BytesIO, ReadOnlyStream])
def test_wsgi_input_read_through_werkzeug_limited_stream(make_stream: Any) -> None:
    from werkzeug.wsgi import LimitedStream

    body = b"0123456789" * 500
    captures: list[Capture | None] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        read = LimitedStream(env["wsgi.input"], len(body)).read()  # uses readinto() when offered
        captures.append(current_capture())
        start_response("200 OK", [])
        return [read]

    env = environ(body)
    env["wsgi.input"] = make_stream(body)
    result = WSGICaptureMiddleware(app, CaptureOptions(max_body_bytes=10_000))(env, lambda *a: None)
    assert result == [body]
    capture = captures[0]
    assert capture is not None and bytes(capture.request_body) == body and capture.request_size == len(body)


def test_store_is_bounded_in_bytes_too() -> None:
    store = CaptureStore(max_entries=100, max_bytes=10_000)
    captures = []
    for span_id in range(10):
        capture = Capture("POST", "/", "", "http", (), bodies=True, limit=4000)
        capture.add_request_chunk(b"x" * 3000, 3000)
        capture.span_id = span_id
        store.register(span_id, capture)
        store.finish(capture)
        captures.append(capture)
    assert store.bytes <= 10_000
    assert len(store) == 3 and store.evicted == 7  # 3 x 3000 bytes fit, the oldest went
    assert store.take(9) is captures[9] and store.bytes == 6000
    assert store.take(0) is None  # evicted: its request is recorded from the span alone


def _otel_middleware(app: Any) -> Any:
    """The OTel middleware of the stack ``app`` built for its requests."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    layer = app.middleware_stack
    while not isinstance(layer, OpenTelemetryMiddleware):
        layer = layer.app
    return layer


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
def test_instrument_app_internal_spans_choice(framework: str) -> None:
    """The choice is made at the first request; end-to-end cases (with the user's exporters,
    spanlytics alone, the environment variable) are in test_end_to_end.py."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from starlette.applications import Starlette

    import spanlytics

    flags = {}
    for choice in (False, True):
        app = FastAPI() if framework == "fastapi" else Starlette()
        spanlytics.instrument_app(app, internal_spans=choice)
        TestClient(app).get("/none")
        middleware = _otel_middleware(app)
        flags[choice] = (middleware.exclude_receive_span, middleware.exclude_send_span)
    assert flags == {False: (True, True), True: (False, False)}
    mine = FastAPI()
    FastAPIInstrumentor.instrument_app(mine)  # instrumented by the user first: left as it is
    spanlytics.instrument_app(mine, internal_spans=False)
    TestClient(mine).get("/none")
    kept = _otel_middleware(mine)
    assert not kept.exclude_receive_span and not kept.exclude_send_span


def test_asgi_headers_are_copied_on_the_request_path_and_decoded_later() -> None:
    # The request path only copies the server's header lists; the exporter decodes them.
    # An app that changes the lists in place afterwards does not change what is recorded.
    from spanlytics.capture.asgi import _deferred_headers, new_capture

    raw = [(b"Host", b"api.test"), (b"Content-Length", b"12"), (b"X-Caf\xe9", b"cr\xe8me")]
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/x", "headers": raw}
    capture = new_capture(scope, CaptureOptions())
    response_raw = [(b"Content-Type", b"application/json")]
    capture.response_headers = _deferred_headers(response_raw)
    raw[0] = (b"host", b"changed.test")
    raw.append((b"x-added", b"1"))
    response_raw.clear()
    assert capture.request_size == 12  # Content-Length read from the raw bytes
    assert capture.request_headers == (("host", "api.test"), ("content-length", "12"), ("x-café", "crème"))
    assert capture.request_headers is capture.request_headers  # decoded once
    assert capture.response_headers == (("content-type", "application/json"),)


def test_wsgi_headers_are_copied_on_the_request_path_and_decoded_later() -> None:
    from spanlytics.capture.wsgi import new_capture

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/x",
        "HTTP_HOST": "api.test",
        "HTTP_X_TRACE_ME": "yes",
        "CONTENT_TYPE": "text/plain",
        "wsgi.url_scheme": "http",
    }
    capture = new_capture(environ, CaptureOptions())
    environ["HTTP_HOST"] = "changed.test"
    environ["HTTP_X_ADDED"] = "1"
    expected = {"host": "api.test", "x-trace-me": "yes", "content-type": "text/plain"}
    assert dict(capture.request_headers) == expected


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_instrument_app_without_the_framework_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, framework: str
) -> None:
    import sys

    from spanlytics.otel.instrument import instrument_app

    # the instrumentation is an extra of spanlytics: as if it were not installed
    monkeypatch.setitem(sys.modules, f"opentelemetry.instrumentation.{framework}", None)
    if framework == "fastapi":
        from fastapi import FastAPI

        app: Any = FastAPI()
    else:
        from flask import Flask

        app = Flask(__name__)
    with pytest.raises(ImportError, match=rf"pip install 'spanlytics\[{framework}\]'"):
        instrument_app(app)


def test_snapshot_fills_every_field_of_the_captured_request() -> None:
    # snapshot builds the named tuple directly, bypassing its __new__: one value per field.
    from spanlytics.capture.snapshot import CapturedRequest

    capture = Capture("GET", "/x", "a=1", "http", (("host", "h"),), bodies=True, limit=8)
    capture.baggage_consumer = "from-baggage"
    snapshot = capture.snapshot()
    assert type(snapshot) is CapturedRequest and len(snapshot) == len(CapturedRequest._fields)
    assert snapshot.baggage_consumer == "from-baggage" and snapshot.header("host") == "h"
