"""A FastAPI app with spanlytics set up in code, plus endpoints that expose its counters."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request

import spanlytics

os.environ.setdefault("SPANLYTICS_EXCLUDE_PATHS", "^/_spanlytics/")
spanlytics.configure()
app = FastAPI()


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
def item(item_id: int, n: int = 0) -> dict[str, Any]:
    return {"id": item_id, "n": n}


@app.post("/echo")
async def echo(request: Request) -> dict[str, int]:
    return {"received": len(await request.body())}


@app.post("/_spanlytics/flush")
def flush() -> dict[str, bool]:
    return {"flushed": spanlytics.flush(timeout_s=5.0)}


@app.get("/_spanlytics/stats")
def stats() -> dict[str, Any]:
    with open("/proc/self/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {**spanlytics.stats(), "rss_kb": rss_kb}


spanlytics.instrument_app(app)
