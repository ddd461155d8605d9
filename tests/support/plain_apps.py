"""Apps that know nothing about spanlytics (nor OpenTelemetry): for zero-code tests."""

from __future__ import annotations

from typing import Any

import flask
from fastapi import FastAPI, Request

fastapi_app = FastAPI()


@fastapi_app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@fastapi_app.get("/items/{item_id}")
def item(item_id: int, n: int = 0) -> dict[str, Any]:
    return {"id": item_id, "n": n}


@fastapi_app.post("/login")
async def login(request: Request) -> dict[str, Any]:
    body = await request.json()
    return {"user": body.get("username"), "access_token": "tok-zero-code-secret"}


@fastapi_app.get("/boom")
def boom() -> None:
    raise ValueError("boom")


flask_app = flask.Flask(__name__)


@flask_app.get("/healthz")
def flask_healthz() -> dict[str, str]:
    return {"status": "ok"}


@flask_app.get("/items/<int:item_id>")
def flask_item(item_id: int) -> dict[str, Any]:
    return {"id": item_id, "n": int(flask.request.args.get("n", "0"))}


@flask_app.post("/login")
def flask_login() -> dict[str, Any]:
    body = flask.request.get_json()
    return {"user": body.get("username"), "access_token": "tok-zero-code-secret"}


@flask_app.get("/boom")
def flask_boom() -> None:
    raise ValueError("boom")
