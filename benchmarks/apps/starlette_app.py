"""The Starlette benchmark app: ``GET /items/{id}`` (about 1 KB of JSON), ``POST /items`` (a
1 KB JSON body in, a summary out) and ``GET /healthz``; ``BENCH_VARIANT`` picks the
instrumentation (see ``common.py``). Served by uvicorn, one worker::

    BENCH_VARIANT=otel uvicorn benchmarks.apps.starlette_app:app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks.apps.common import ITEM, install, report_config, summarize


async def healthz(request: Request) -> JSONResponse:
    report_config(app, "starlette")
    return JSONResponse({"status": "ok"})


async def item(request: Request) -> JSONResponse:
    identify(request)
    return JSONResponse({**ITEM, "id": request.path_params["item_id"]})


async def create(request: Request) -> JSONResponse:
    identify(request)
    return JSONResponse(summarize(await request.json()))


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/items/{item_id:int}", item),
        Route("/items", create, methods=["POST"]),
    ]
)
identify = install(app, "starlette")
