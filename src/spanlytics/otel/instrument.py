"""``instrument_app``: put the capture middleware on a FastAPI, Starlette or Flask app.

Importing it also hands capture the flush to run when an ASGI app's lifespan shuts down
(capture imports nothing above it; ``spanlytics`` imports this module, so the hook is in
place before any request can be captured).
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from spanlytics.app_routes import register_app
from spanlytics.capture.asgi import ASGIApp, ASGICaptureMiddleware
from spanlytics.capture.options import PROCESS_CAPTURE, CaptureOptions
from spanlytics.capture.wsgi import WSGICaptureMiddleware
from spanlytics.otel.configure import flush, spanlytics_is_the_only_processor

_logger = logging.getLogger("spanlytics.capture")

App = TypeVar("App")
_MARK = "_spanlytics_capture_installed"


OTEL_APPLIED_MARK = "_spanlytics_applied_otel"
"""Set on an app whose OTel instrumentation ``instrument_app`` applied (and so tunes)."""


def keep_internal_spans(requested: bool | None) -> bool:
    """Whether the ASGI middleware keeps its ``receive``/``send`` spans.

    ``True``/``False`` is the user's choice (``instrument_app(internal_spans=...)`` or
    ``SPANLYTICS_ASGI_INTERNAL_SPANS``). Unset, they are kept whenever the global
    TracerProvider has any span processor other than spanlytics' own, so the user's
    exporters receive exactly what they would without spanlytics; they are left out only
    when nothing but spanlytics would ever see them.
    """
    if requested is not None:
        return requested
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    return not (isinstance(provider, TracerProvider) and spanlytics_is_the_only_processor(provider))


def apply_internal_spans_choice(stack: object, requested: bool | None) -> None:
    """Leave out the internal spans of the OTel ASGI middleware in ``stack`` unless kept.

    Run at the app's first request (see :meth:`ProcessCapture.defer
    <spanlytics.capture.options.ProcessCapture.defer>`), so the choice
    sees every span processor set up by then, also after ``configure()``, in a lifespan
    handler or by the zero-code hook. The middleware reads its ``exclude_*`` flags on each
    request; they are what its ``exclude_spans`` argument sets.
    """
    if keep_internal_spans(requested):
        return
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    node, depth = stack, 0
    while node is not None and depth < 32:  # ServerErrorMiddleware -> ... -> the router
        if isinstance(node, OpenTelemetryMiddleware):
            node.exclude_receive_span = True
            node.exclude_send_span = True
            return
        node, depth = getattr(node, "app", None), depth + 1


# The framework instrumentations are extras of spanlytics (named by the keys): module, class.
_INSTRUMENTORS = {
    "fastapi": ("opentelemetry.instrumentation.fastapi", "FastAPIInstrumentor"),
    "flask": ("opentelemetry.instrumentation.flask", "FlaskInstrumentor"),
}


def _instrumentor(extra: str) -> Any:
    """The framework's OTel instrumentor class, or an ImportError that says what to install."""
    module, name = _INSTRUMENTORS[extra]
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise ImportError(
            f"instrument_app needs {module.replace('.', '-')} for a {extra} app: "
            f"pip install 'spanlytics[{extra}]'"
        ) from exc


def _otel_instrument_asgi(app: Any) -> Callable[[ASGIApp], ASGIApp] | None:
    """Apply the framework's standard OTel instrumentor, or return a raw-middleware wrapper.

    Returns None when the app is (now) instrumented by its framework instrumentor, else a
    function to wrap the middleware stack with the generic ASGI middleware (which sets no
    ``http.route``; the capture supplies the route from Starlette's routing then). Either
    way with the instrumentor's defaults: :func:`apply_internal_spans_choice` decides on the
    internal spans at the first request.
    """
    # An app can only be a FastAPI app once fastapi is imported: importing it here would
    # cost a Starlette app about 15 MB and 150 ms (pydantic) for nothing.
    fastapi = sys.modules.get("fastapi")
    if fastapi is not None and isinstance(app, fastapi.FastAPI):
        _instrumentor("fastapi").instrument_app(app)
        return None
    try:
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor

        StarletteInstrumentor.instrument_app(app)
        return None
    except ImportError:
        _logger.info("no FastAPI/Starlette instrumentor installed; using the generic ASGI one")
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    def wrap(stack: ASGIApp) -> ASGIApp:
        middleware: ASGIApp = OpenTelemetryMiddleware(stack)
        return middleware

    return wrap


def instrument_app(
    app: App, *, options: CaptureOptions | None = None, internal_spans: bool | None = None
) -> App:
    """Install request/response capture on ``app`` and return it.

    Works with FastAPI and Starlette (the capture wraps the whole middleware stack, outside
    the OTel middleware, so 500 responses made by Starlette's error handler are seen too)
    and Flask (``app.wsgi_app`` is wrapped). If the app is not instrumented by
    OpenTelemetry yet, the standard instrumentor for its framework is applied first; an app
    already instrumented is left as it is.

    ``internal_spans`` (ASGI only; default ``SPANLYTICS_ASGI_INTERNAL_SPANS``): whether the
    instrumentation applied here keeps the middleware's ``receive``/``send`` spans. Unset,
    they are kept whenever the TracerProvider has a span processor other than spanlytics'
    (your exporters then see exactly what they would without spanlytics) and left out when
    spanlytics is its only processor; ``False`` always leaves them out (faster).
    Calling it twice is harmless::

        app = FastAPI()
        spanlytics.configure()
        spanlytics.instrument_app(app)
    """
    target: Any = app
    if getattr(target, _MARK, False):
        return app
    if hasattr(target, "build_middleware_stack"):
        applied_otel = not getattr(target, "_is_instrumented_by_opentelemetry", False)
        generic = _otel_instrument_asgi(target) if applied_otel else None
        build = target.build_middleware_stack

        def build_middleware_stack() -> ASGIApp:
            stack: ASGIApp = build()
            if generic is not None:
                stack = generic(stack)
            if applied_otel:

                def choose() -> None:
                    requested = internal_spans
                    if requested is None:
                        requested = (options or PROCESS_CAPTURE.options()).internal_spans
                    apply_internal_spans_choice(stack, requested)

                PROCESS_CAPTURE.defer(choose)
            return ASGICaptureMiddleware(stack, options)

        target.build_middleware_stack = build_middleware_stack
        target.middleware_stack = None  # rebuilt with the capture on the next request
        setattr(target, OTEL_APPLIED_MARK, applied_otel)
    elif hasattr(target, "wsgi_app"):
        if not getattr(target, "_is_instrumented_by_opentelemetry", False):
            _instrumentor("flask").instrument_app(target)
        target.wsgi_app = WSGICaptureMiddleware(target.wsgi_app, options)
    else:
        raise TypeError(
            f"instrument_app supports FastAPI, Starlette and Flask apps, not {type(app).__name__}; "
            "wrap other ASGI/WSGI apps with ASGICaptureMiddleware or WSGICaptureMiddleware"
        )
    setattr(target, _MARK, True)
    register_app(target)
    return app


def _flush_at_lifespan_shutdown() -> None:
    flush(timeout_s=10.0)


PROCESS_CAPTURE.on_lifespan_shutdown(_flush_at_lifespan_shutdown)
