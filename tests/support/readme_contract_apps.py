"""The routes ReadMe's cross-SDK contract test drives, on FastAPI and on Flask."""

from __future__ import annotations

from typing import Any

import flask
from fastapi import FastAPI, Request, Response

import spanlytics

spanlytics.configure()
CONSUMER = ("owlbert-api-key", "Owlbert", "owlbert@example.com")

fastapi_app = FastAPI()


@fastapi_app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@fastapi_app.get("/")
def get_root() -> dict[str, Any]:
    spanlytics.set_consumer(CONSUMER[0], name=CONSUMER[1], email=CONSUMER[2])
    return {"message": "hello world"}


@fastapi_app.post("/")
async def post_root(request: Request) -> Response:
    spanlytics.set_consumer(CONSUMER[0], name=CONSUMER[1], email=CONSUMER[2])
    body = await request.body()
    return Response(body, media_type=request.headers.get("content-type", "text/plain"))


spanlytics.instrument_app(fastapi_app)

flask_app = flask.Flask(__name__)


@flask_app.get("/healthz")
def flask_healthz() -> dict[str, str]:
    return {"status": "ok"}


@flask_app.route("/", methods=["GET", "POST"])
def flask_root() -> Any:
    spanlytics.set_consumer(CONSUMER[0], name=CONSUMER[1], email=CONSUMER[2])
    if flask.request.method == "GET":
        return {"message": "hello world"}
    return flask.Response(flask.request.get_data(), content_type=flask.request.content_type or "text/plain")


spanlytics.instrument_app(flask_app)
