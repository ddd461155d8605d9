"""FastAPI and Flask apps for the leak property test: the same endpoints on both.

* ``GET /leak/ok``: ``{"ok": true}``, ignores its input (header and query positions);
* ``POST /leak/echo``: the request body back, same content type;
* ``POST /leak/boom``: raises an exception whose message holds the body's ``password``;
* ``POST /leak/login``: validation; FastAPI's own 422 echoes the rejected ``input``, Flask
  answers the same shape by hand;
* ``POST /leak/reject?as=json|text``: a 400 that quotes the raw request body;
* ``POST /leak/echo-header``: a 401 that quotes the ``X-Api-Key`` it rejects;
* ``POST /leak/redirect``: a 302 to ``...?code=<client_secret>`` with a session cookie.

``make_fastapi_app(provider)`` / ``make_flask_app(provider)`` build instrumented apps for an
in-process pipeline. Imported as a module (``tests.support.leak_apps:fastapi_app``), the
apps are set up from ``SPANLYTICS_*`` variables with ``spanlytics.configure()``, and
spanlytics' own log records also go to ``LEAK_SPANLYTICS_LOG`` when that is set.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any
from urllib.parse import parse_qs

import flask
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel, Field

import spanlytics


class LeakError(Exception):
    """What /leak/boom raises."""


def raise_for(kind: str, password: str) -> None:
    if kind == "bad-password":
        raise LeakError(f"bad password {password}")
    if kind == "token-for-user":
        raise LeakError(f"invalid token {password} for user bob")
    if kind == "dict-repr":
        raise LeakError(f"bad credentials { ({'password': password})!r}")
    if kind == "chained":
        try:
            raise RuntimeError(f"login failed for bob with {password}")
        except RuntimeError as cause:
            raise LeakError("could not log in") from cause
    if kind == "keyerror":
        raise KeyError(password)
    raise LeakError(f"Authorization Token {password} rejected")


def reject_text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


class Login(BaseModel):
    username: str
    password: Annotated[str, Field(max_length=8)]
    pin: int | None = None
    api_key: str | None = None


# --- FastAPI ---------------------------------------------------------------------------------


def _fastapi_routes() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/leak/ok")
    def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/leak/echo")
    async def echo(request: Request) -> Response:
        body = await request.body()
        return Response(body, media_type=request.headers.get("content-type", "application/octet-stream"))

    @app.post("/leak/boom")
    async def boom(request: Request) -> None:
        data = await request.json()
        raise_for(data["kind"], data["password"])

    @app.post("/leak/login")
    def login(data: Login) -> dict[str, str]:
        return {"user": data.username}

    @app.post("/leak/reject")
    async def reject(request: Request) -> Response:
        text = reject_text(await request.body())
        if request.query_params.get("as") == "text":
            return PlainTextResponse(f"could not process the request: {text}", status_code=400)
        return JSONResponse({"error": "could not process the request", "received": text}, status_code=400)

    @app.post("/leak/echo-header")
    def echo_header(request: Request) -> JSONResponse:
        key = request.headers.get("x-api-key", "")
        return JSONResponse({"error": "unknown key", "key": key}, status_code=401)

    @app.post("/leak/redirect")
    async def redirect(request: Request) -> RedirectResponse:
        form = parse_qs((await request.body()).decode())  # no python-multipart needed
        code = form.get("client_secret", [""])[0]
        response = RedirectResponse(f"https://client.example/cb?code={code}&state=xyz", status_code=302)
        response.set_cookie("session", code)
        return response

    return app


def make_fastapi_app(provider: TracerProvider | None = None) -> FastAPI:
    app = _fastapi_routes()
    if provider is not None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=["receive", "send"])
    spanlytics.instrument_app(app)
    return app


# --- Flask -----------------------------------------------------------------------------------


def _flask_routes() -> flask.Flask:
    app = flask.Flask(__name__)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/leak/ok")
    def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/leak/echo")
    def echo() -> flask.Response:
        body = flask.request.get_data()
        return flask.Response(body, content_type=flask.request.content_type or "application/octet-stream")

    @app.post("/leak/boom")
    def boom() -> None:
        data = flask.request.get_json(force=True)
        raise_for(data["kind"], data["password"])

    @app.post("/leak/login")
    def login() -> Any:
        data = flask.request.get_json(force=True)
        if not isinstance(data, dict):
            error = {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary",
                "input": data,
            }
            return flask.jsonify({"detail": [error]}), 422
        errors = []
        password = data.get("password")
        if isinstance(password, str) and len(password) > 8:
            errors.append(
                {
                    "type": "string_too_long",
                    "loc": ["body", "password"],
                    "msg": "String should have at most 8 characters",
                    "input": password,
                }
            )
        pin = data.get("pin")
        if pin is not None and not isinstance(pin, int):
            errors.append(
                {
                    "type": "int_parsing",
                    "loc": ["body", "pin"],
                    "msg": "Input should be a valid integer",
                    "input": pin,
                }
            )
        key = data.get("api_key")
        if key is not None and not isinstance(key, str):
            errors.append(
                {
                    "type": "string_type",
                    "loc": ["body", "api_key"],
                    "msg": "Input should be a valid string",
                    "input": key,
                }
            )
        if errors:
            return flask.jsonify({"detail": errors}), 422
        return {"user": data.get("username")}

    @app.post("/leak/reject")
    def reject() -> Any:
        text = reject_text(flask.request.get_data())
        if flask.request.args.get("as") == "text":
            return flask.Response(
                f"could not process the request: {text}", status=400, content_type="text/plain"
            )
        return flask.jsonify({"error": "could not process the request", "received": text}), 400

    @app.post("/leak/echo-header")
    def echo_header() -> Any:
        return flask.jsonify({"error": "unknown key", "key": flask.request.headers.get("X-Api-Key", "")}), 401

    @app.post("/leak/redirect")
    def redirect() -> flask.Response:
        code = flask.request.form.get("client_secret", "")
        response = flask.redirect(f"https://client.example/cb?code={code}&state=xyz", 302)
        response.set_cookie("session", code)
        return response

    return app


def make_flask_app(provider: TracerProvider | None = None) -> flask.Flask:
    app = _flask_routes()
    if provider is not None:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor.instrument_app(app, tracer_provider=provider)
    spanlytics.instrument_app(app)
    return app


# --- the served variant (real sockets) ---------------------------------------------------------

if os.environ.get("LEAK_SERVED"):
    _log_path = os.environ.get("LEAK_SPANLYTICS_LOG")
    if _log_path:
        _handler = logging.FileHandler(_log_path)
        _handler.setFormatter(logging.Formatter("%(process)d %(name)s %(levelname)s %(message)s"))
        _spanlytics_logger = logging.getLogger("spanlytics")
        _spanlytics_logger.addHandler(_handler)
        _spanlytics_logger.setLevel(logging.DEBUG)
    spanlytics.configure()
    fastapi_app = make_fastapi_app()
    flask_app = make_flask_app()
