"""``instrument_app``: put the capture middleware on a FastAPI, Starlette or Flask app."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from spanlytics.capture.asgi import ASGIApp, ASGICaptureMiddleware
from spanlytics.capture.options import CaptureOptions
from spanlytics.capture.routes import register_app
from spanlytics.capture.wsgi import WSGICaptureMiddleware

_logger = logging.getLogger("spanlytics.capture")

App = TypeVar("App")
_MARK = "_spanlytics_capture_installed"


INTERNAL_SPANS: tuple[Literal["receive", "send"], ...] = ("receive", "send")
"""The ASGI middleware's internal spans (one per body message); capture does not need them."""


def _exclude_internal_spans(app: Any) -> None:
    """StarletteInstrumentor.instrument_app has no ``exclude_spans``; its middleware does."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    for middleware in getattr(app, "user_middleware", ()):
        if middleware.cls is OpenTelemetryMiddleware and "exclude_spans" not in middleware.kwargs:
            middleware.kwargs["exclude_spans"] = list(INTERNAL_SPANS)


def _otel_instrument_asgi(app: Any) -> Callable[[ASGIApp], ASGIApp] | None:
    """Apply the framework's standard OTel instrumentor, or return a raw-middleware wrapper.

    Returns None when the app is (now) instrumented by its framework instrumentor, else a
    function to wrap the middleware stack with the generic ASGI middleware (which sets no
    ``http.route``; the capture supplies the route from Starlette's routing then).
    """
    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        return None
    # An app can only be a FastAPI app once fastapi is imported: importing it here would
    # cost a Starlette app about 15 MB and 150 ms (pydantic) for nothing.
    fastapi = sys.modules.get("fastapi")
    if fastapi is not None and isinstance(app, fastapi.FastAPI):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, exclude_spans=list(INTERNAL_SPANS))
        return None
    try:
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor

        StarletteInstrumentor.instrument_app(app)
        _exclude_internal_spans(app)
        return None
    except ImportError:
        _logger.info("no FastAPI/Starlette instrumentor installed; using the generic ASGI one")
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    def wrap(stack: ASGIApp) -> ASGIApp:
        middleware: ASGIApp = OpenTelemetryMiddleware(stack, exclude_spans=list(INTERNAL_SPANS))
        return middleware

    return wrap


def instrument_app(app: App, *, options: CaptureOptions | None = None) -> App:
    """Install request/response capture on ``app`` and return it.

    Works with FastAPI and Starlette (the capture wraps the whole middleware stack, outside
    the OTel middleware, so 500 responses made by Starlette's error handler are seen too)
    and Flask (``app.wsgi_app`` is wrapped). If the app is not instrumented by
    OpenTelemetry yet, the standard instrumentor for its framework is applied first, without
    the ASGI middleware's internal ``receive``/``send`` spans (instrument the app yourself
    first to keep them).
    Calling it twice is harmless::

        app = FastAPI()
        spanlytics.configure()
        spanlytics.instrument_app(app)
    """
    target: Any = app
    if getattr(target, _MARK, False):
        return app
    if hasattr(target, "build_middleware_stack"):
        generic = _otel_instrument_asgi(target)
        build = target.build_middleware_stack

        def build_middleware_stack() -> ASGIApp:
            stack: ASGIApp = build()
            if generic is not None:
                stack = generic(stack)
            return ASGICaptureMiddleware(stack, options)

        target.build_middleware_stack = build_middleware_stack
        target.middleware_stack = None  # rebuilt with the capture on the next request
    elif hasattr(target, "wsgi_app"):
        if not getattr(target, "_is_instrumented_by_opentelemetry", False):
            from opentelemetry.instrumentation.flask import FlaskInstrumentor

            FlaskInstrumentor.instrument_app(target)  # type: ignore[no-untyped-call]
        target.wsgi_app = WSGICaptureMiddleware(target.wsgi_app, options)
    else:
        raise TypeError(
            f"instrument_app supports FastAPI, Starlette and Flask apps, not {type(app).__name__}; "
            "wrap other ASGI/WSGI apps with ASGICaptureMiddleware or WSGICaptureMiddleware"
        )
    setattr(target, _MARK, True)
    register_app(target)
    return app
