"""The Flask benchmark app: the same routes as the ASGI ones (``GET /items/<id>``,
``POST /items``, ``GET /healthz``); ``BENCH_VARIANT`` picks the instrumentation (see
``common.py``). Served by gunicorn, one sync worker::

    BENCH_VARIANT=otel gunicorn -w 1 -k sync benchmarks.apps.flask_app:app
"""

from __future__ import annotations

from typing import Any

import flask

from benchmarks.apps.common import ITEM, install, report_config, summarize

app = flask.Flask(__name__)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    report_config(app, "flask")
    return {"status": "ok"}


@app.get("/items/<int:item_id>")
def item(item_id: int) -> dict[str, Any]:
    identify(flask.request)
    return {**ITEM, "id": item_id}


@app.post("/items")
def create() -> dict[str, Any]:
    identify(flask.request)
    return summarize(flask.request.get_json())


identify = install(app, "flask")
