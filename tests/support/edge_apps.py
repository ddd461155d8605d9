"""Apps with edge-case endpoints (streaming, chunked, large, empty, HEAD, non-UTF-8) used to
prove that spanlytics changes no byte of any response.

``SPANLYTICS_TEST_VARIANT`` picks what is installed: ``otel`` (the standard instrumentor
only) or ``spanlytics`` (``configure()`` + ``instrument_app()``). Consumers are identified
with ``set_consumer`` (``?consumer=``), the callback (``X-Callback-Consumer``; the value
``raise`` makes the callback raise) or the header (``SPANLYTICS_CONSUMER_HEADER``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import flask
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

import spanlytics

VARIANT = os.environ.get("SPANLYTICS_TEST_VARIANT", "spanlytics")
LARGE = bytes(range(256)) * (10 * 1024 * 1024 // 256)  # 10 MiB, not valid UTF-8
NON_UTF8 = b"caf\xe9 \xff\xfe na\xefve"


def identify(request: Any) -> object:
    value = request.headers.get("x-callback-consumer")
    if value == "raise":
        raise RuntimeError("callback failed with secret-token-123")
    return {"identifier": value, "name": f"Callback {value}", "group": "cb"} if value else None


def _setup() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())  # both variants record real spans
    if VARIANT == "spanlytics":
        spanlytics.configure(identify_consumer=identify)


def _stream_chunks(n: int) -> Iterator[bytes]:
    for i in range(n):
        yield f"chunk {i}\n".encode() * 50


# --- FastAPI (ASGI) -------------------------------------------------------------------

_setup()
fastapi_app = FastAPI()


@fastapi_app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@fastapi_app.api_route("/echo", methods=["POST", "PUT"])
async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type=request.headers.get("content-type", "application/octet-stream"))


@fastapi_app.post("/ignore-body")
def ignore_body() -> dict[str, bool]:
    return {"read": False}


@fastapi_app.get("/items/{item_id}")
def item(item_id: int, consumer: str | None = None) -> dict[str, Any]:
    if consumer:
        spanlytics.set_consumer(consumer, name=f"Consumer {consumer}", group="set")
    return {"id": item_id, "name": f"item {item_id}"}


@fastapi_app.get("/stream")
def stream(n: int = 20) -> StreamingResponse:
    return StreamingResponse(_stream_chunks(n), media_type="text/plain")


@fastapi_app.get("/large")
def large() -> Response:
    return Response(LARGE, media_type="application/octet-stream")


@fastapi_app.get("/empty")
def empty() -> Response:
    return Response(status_code=204)


@fastapi_app.get("/non-utf8")
def non_utf8() -> Response:
    return Response(NON_UTF8, media_type="text/plain")


@fastapi_app.get("/text")
def text() -> PlainTextResponse:
    return PlainTextResponse("hello")


@fastapi_app.get("/boom")
def boom() -> None:
    raise ValueError("kaboom")


if VARIANT == "spanlytics":
    spanlytics.instrument_app(fastapi_app)
else:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(fastapi_app)


# --- Flask (WSGI) ---------------------------------------------------------------------

flask_app = flask.Flask(__name__)


@flask_app.get("/healthz")
def flask_healthz() -> dict[str, str]:
    return {"status": "ok"}


@flask_app.route("/echo", methods=["POST", "PUT"])
def flask_echo() -> flask.Response:
    body = flask.request.get_data()
    return flask.Response(body, content_type=flask.request.content_type or "application/octet-stream")


@flask_app.post("/ignore-body")
def flask_ignore_body() -> dict[str, bool]:
    return {"read": False}


@flask_app.get("/items/<int:item_id>")
def flask_item(item_id: int) -> dict[str, Any]:
    consumer = flask.request.args.get("consumer")
    if consumer:
        spanlytics.set_consumer(consumer, name=f"Consumer {consumer}", group="set")
    return {"id": item_id, "name": f"item {item_id}"}


@flask_app.get("/stream")
def flask_stream() -> flask.Response:
    n = int(flask.request.args.get("n", "20"))
    return flask.Response(_stream_chunks(n), content_type="text/plain")


@flask_app.get("/large")
def flask_large() -> flask.Response:
    return flask.Response(LARGE, content_type="application/octet-stream")


@flask_app.get("/empty")
def flask_empty() -> flask.Response:
    return flask.Response(status=204)


@flask_app.get("/non-utf8")
def flask_non_utf8() -> flask.Response:
    return flask.Response(NON_UTF8, content_type="text/plain")


@flask_app.get("/text")
def flask_text() -> str:
    return "hello"


@flask_app.get("/boom")
def flask_boom() -> None:
    raise ValueError("kaboom")


if VARIANT == "spanlytics":
    spanlytics.instrument_app(flask_app)
else:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor.instrument_app(flask_app)
