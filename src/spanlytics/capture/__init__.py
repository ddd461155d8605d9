"""Protocol-level capture of request/response headers and bodies (ASGI and WSGI)."""

from spanlytics.capture.asgi import ASGICaptureMiddleware
from spanlytics.capture.lifecycle import RequestView
from spanlytics.capture.options import CaptureOptions
from spanlytics.capture.wsgi import WSGICaptureMiddleware

__all__ = [
    "ASGICaptureMiddleware",
    "CaptureOptions",
    "RequestView",
    "WSGICaptureMiddleware",
]
