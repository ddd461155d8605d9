"""The FastAPI benchmark app: the same routes as the Starlette one (``GET /items/{id}``,
``POST /items``, ``GET /healthz``); ``BENCH_VARIANT`` picks the instrumentation (see
``common.py``). Served by uvicorn, one worker::

    BENCH_VARIANT=otel uvicorn benchmarks.apps.fastapi_app:app
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from benchmarks.apps.common import ITEM, install, report_config, summarize

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    report_config(app, "fastapi")
    return {"status": "ok"}


@app.get("/items/{item_id}")
async def item(item_id: int, request: Request) -> dict[str, Any]:
    identify(request)
    return {**ITEM, "id": item_id}


@app.post("/items")
async def create(request: Request) -> dict[str, Any]:
    identify(request)
    return summarize(await request.json())


identify = install(app, "fastapi")
