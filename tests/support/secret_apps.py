"""FastAPI and Flask apps whose responses, errors and redirects repeat secrets, for the masking
end-to-end tests (tests/test_masking_leaks_end_to_end.py). spanlytics is set up in code;
destinations and consumer sources come from ``SPANLYTICS_*`` variables.

* ``POST /echo``: the body back, with the request's Content-Type;
* ``POST /login``: FastAPI validates ``{"user", "password"}`` (a 422 echoes the rejected
  password under ``input``); Flask answers 400 quoting the password;
* ``GET /raise``: raises ``ValueError(f"bad password {DB_PASSWORD}")`` (a server-side secret
  that no request carried);
* ``GET /redirect``: 302 to ``/cb?code=<OAUTH_CODE>&state=xyz``;
* ``GET /reset/{token}``: a secret as a path parameter.
"""

from __future__ import annotations

from typing import Any

import flask
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

import spanlytics

OAUTH_CODE = "oauth-S3CR3T-code-4f1b2c9d8e7a"
DB_PASSWORD = "hunter2-S3CR3T-db"

spanlytics.configure()

# --- FastAPI --------------------------------------------------------------------------------

fastapi_app = FastAPI()


class Login(BaseModel):
    user: str
    password: str = Field(min_length=40)


@fastapi_app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@fastapi_app.post("/echo")
async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, media_type=request.headers.get("content-type", "application/octet-stream"))


@fastapi_app.post("/login")
def login(credentials: Login) -> dict[str, str]:
    return {"user": credentials.user}


@fastapi_app.get("/raise")
def fail() -> None:
    raise ValueError(f"bad password {DB_PASSWORD}")


@fastapi_app.get("/redirect")
def redirect() -> RedirectResponse:
    return RedirectResponse(f"/cb?code={OAUTH_CODE}&state=xyz", status_code=302)


@fastapi_app.get("/reset/{token}")
def reset(token: str) -> dict[str, bool]:
    return {"ok": bool(token)}


spanlytics.instrument_app(fastapi_app)

# --- Flask ----------------------------------------------------------------------------------

flask_app = flask.Flask(__name__)


@flask_app.get("/healthz")
def flask_healthz() -> dict[str, str]:
    return {"status": "ok"}


@flask_app.post("/echo")
def flask_echo() -> flask.Response:
    body = flask.request.get_data()
    return flask.Response(body, content_type=flask.request.content_type or "application/octet-stream")


@flask_app.post("/login")
def flask_login() -> tuple[dict[str, Any], int]:
    data = flask.request.get_json(force=True)
    return {"error": f"password {data.get('password')} is too short"}, 400


@flask_app.get("/raise")
def flask_fail() -> None:
    raise ValueError(f"bad password {DB_PASSWORD}")


@flask_app.get("/redirect")
def flask_redirect() -> flask.Response:
    return flask.redirect(f"/cb?code={OAUTH_CODE}&state=xyz", 302)


@flask_app.get("/reset/<token>")
def flask_reset(token: str) -> dict[str, bool]:
    return {"ok": bool(token)}


spanlytics.instrument_app(flask_app)
