"""The items service: a FastAPI app instrumented with spanlytics.

spanlytics is configured entirely from ``SPANLYTICS_*`` environment variables, so the same code
runs locally (local SQLite store by default) and in production (ReadMe, Apitally, ...)::

    uvicorn spanlytics.demo.service.main:app --port 8000
    uvicorn examples.fastapi_service.main:app --port 8000   # the same app, from a checkout
    python -m examples.fastapi_service                      # same, honours $HOST and $PORT

It ships inside the package (``pip install 'spanlytics[demo]'``) so that ``spanlytics demo``
runs anywhere, not only in a checkout.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import spanlytics

from .routers import auth, debug, health, items, reports

app = FastAPI(
    title="Items service",
    version="1.0.0",
    description="A demo microservice whose API analytics come from spanlytics.",
)
app.include_router(health.router)
app.include_router(auth.router)
app.include_router(items.router)
app.include_router(reports.router)
app.include_router(debug.router)


@app.exception_handler(Exception)
async def unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    """Answer an unhandled exception with a JSON 500; the exception still reaches the server log.

    Starlette re-raises the exception after this response, and uvicorn then closes the
    connection: ``Connection: close`` tells keep-alive clients not to reuse it.
    """
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500, headers={"Connection": "close"})


# Attach spanlytics to the TracerProvider (creating one if the app has none), then install
# body/header capture and the standard OpenTelemetry FastAPI instrumentation. Both calls read
# their settings from SPANLYTICS_* environment variables and are idempotent.
spanlytics.configure()
spanlytics.instrument_app(app)


def main() -> None:
    """Serve the app with uvicorn on ``$HOST`` (default 127.0.0.1) and ``$PORT`` (default 8000)."""
    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))


if __name__ == "__main__":
    main()
