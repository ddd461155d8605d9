"""spanlytics: API analytics and masked request logs from OpenTelemetry HTTP server spans.

>>> import spanlytics                                     # doctest: +SKIP
>>> spanlytics.configure()          # attach to the app's TracerProvider
>>> spanlytics.instrument_app(app)  # capture headers and bodies (FastAPI, Starlette, Flask)
>>> spanlytics.set_consumer("acme", name="Acme Corp", group="enterprise")  # in a handler
"""

import sys

from spanlytics.__about__ import VERSION
from spanlytics.capture import ASGICaptureMiddleware, CaptureOptions, RequestView, WSGICaptureMiddleware
from spanlytics.config import Settings
from spanlytics.consumer import Consumer, set_consumer
from spanlytics.masking import KEEP, Masker, MaskingRules
from spanlytics.otel.configure import configure, flush, shutdown, stats
from spanlytics.otel.exporter import SpanlyticsExporter
from spanlytics.otel.instrument import instrument_app
from spanlytics.otel.processor import SpanlyticsProcessor
from spanlytics.otel.sampling import SpanlyticsSampler
from spanlytics.record import RequestRecord

__version__ = VERSION

if "opentelemetry.instrumentation.auto_instrumentation" in sys.modules:
    # An opentelemetry-instrument run: it imports us as a traces exporter before it imports
    # the metrics and logs exporters, so this is the moment to warn if those are missing.
    from spanlytics.otel.auto import warn_if_zero_code_set_up_aborts

    warn_if_zero_code_set_up_aborts()

__all__ = [
    "KEEP",
    "ASGICaptureMiddleware",
    "CaptureOptions",
    "Consumer",
    "Masker",
    "MaskingRules",
    "RequestRecord",
    "RequestView",
    "Settings",
    "SpanlyticsExporter",
    "SpanlyticsProcessor",
    "SpanlyticsSampler",
    "WSGICaptureMiddleware",
    "__version__",
    "configure",
    "flush",
    "instrument_app",
    "set_consumer",
    "shutdown",
    "stats",
]
