"""Protocol-level capture of request/response headers and bodies (ASGI and WSGI)."""

from spanlytics.capture.asgi import ASGICaptureMiddleware
from spanlytics.capture.options import CaptureOptions, RequestView
from spanlytics.capture.wsgi import WSGICaptureMiddleware
from spanlytics.otel.instrument import instrument_app

__all__ = [
    "ASGICaptureMiddleware",
    "CaptureOptions",
    "RequestView",
    "WSGICaptureMiddleware",
    "instrument_app",
]
