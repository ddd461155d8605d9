"""The app whose traffic the dashboard tests look at: FastAPI with spanlytics set up from the
environment (the local store), a consumer (id and name) taken from request headers, a login
that receives a password and answers a token, and a crash whose message is attacker text."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

import spanlytics

app = FastAPI()


def _identify(request: Request) -> None:
    consumer = request.headers.get("x-consumer")
    if consumer:
        spanlytics.set_consumer(consumer, name=request.headers.get("x-consumer-name"), group="tests")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
def item(item_id: str, request: Request) -> dict[str, Any]:
    _identify(request)
    return {"id": item_id}


@app.post("/login")
async def login(request: Request) -> dict[str, Any]:
    _identify(request)
    body = await request.json()
    return {"user": body.get("username"), "access_token": "tok-dashboard-secret-4711"}


@app.get("/boom")
def boom(request: Request) -> None:
    _identify(request)
    raise ValueError(request.headers.get("x-message", "boom"))


spanlytics.configure()
spanlytics.instrument_app(app)
