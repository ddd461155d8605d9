"""What the three benchmark apps share: the payload, and the instrumentation of each variant.

The harness (``benchmarks/harness.py``) starts one server process per variant with
``BENCH_VARIANT`` set. The framework module builds its tiny app (identical routes on every
framework), then calls :func:`install`, which applies that variant's instrumentation and
returns the hook the handlers call to name the API consumer. Each tool identifies the
consumer its own documented way, because ReadMe (spanlytics' ``readme`` destination and the
``readme-metrics`` SDK alike) logs nothing for an anonymous request.

Peer variants run in their own virtualenv, where spanlytics is not installed, so this module
imports no tool (and not OpenTelemetry) at module level: each installer imports what it uses.
The harness passes addresses through the environment: ``BENCH_DB``, ``BENCH_SPOOL_DIR``,
``BENCH_STUB_URL``, ``BENCH_CONFIG_OUT`` (see :func:`report_config`), plus the peers' own
variables (``APITALLY_OTLP_ENDPOINT``, ``APITALLY_HUB_BASE_URL``, ``README_METRICS_SERVER``).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
CONSUMER_HEADER = "X-Consumer-Id"
README_API_KEY = "rdme_benchmark0000000000000000000000000000"
APITALLY_CLIENT_ID = "6f1a8a52-3f1e-4f43-9a53-6bb2b4bd7e10"
APITALLY_WRITE_TOKEN = "apt_" + "benchmark".ljust(24, "0")  # the format 1.x checks (24 characters)

ITEM: dict[str, Any] = {
    "id": 1,
    "name": "Anvil",
    "description": "Drop-forged, 50 kg " * 10,
    "tags": ["tools", "heavy", "classic"],
    "price": 129.0,
    "stock": [{"warehouse": f"w{i}", "count": i * 3} for i in range(10)],
}
"""What ``GET /items/{id}`` returns: about 1 KB of JSON."""

Identify = Callable[[Any], None]
"""Called by every handler with the framework's request object."""


def summarize(doc: Any) -> dict[str, Any]:
    """The answer of ``POST /items``: a summary of the JSON body, without its secret."""
    fields = doc if isinstance(doc, dict) else {}
    return {"received": sorted(fields), "name": fields.get("name"), "tags": len(fields.get("tags", ()))}


def consumer_id(request: Any) -> str:
    """The consumer the load generator names in every request (readiness probes name none)."""
    return str(request.headers.get(CONSUMER_HEADER) or "anonymous")


def no_consumer(request: Any) -> None:
    """For variants that record no consumer, or find it without the handler's help."""


def report_config(app: Any, framework: str) -> None:
    """Write the OpenTelemetry set-up this server really runs to ``BENCH_CONFIG_OUT``, once.

    Called by ``/healthz``, the harness's readiness probe and so the first request a server
    gets: by then ``instrument_app`` has made its choice of the ASGI internal spans (deferred
    to the first request), so the middleware's flags are final. The harness compares each
    variant with the OTel-alone variant of the same set-up; the measured routes never call it.
    """
    path = Path(os.environ.get("BENCH_CONFIG_OUT") or "")
    if path == Path() or path.exists():
        return
    path.write_text(json.dumps(otel_config(app, framework)))


def otel_config(app: Any, framework: str) -> dict[str, Any]:
    """Whether ``app`` runs an OTel instrumentation and, for ASGI, whether its middleware
    leaves out the internal ``receive``/``send`` spans (its ``exclude_*_span`` flags)."""
    config: dict[str, Any] = {"variant": VARIANT, "framework": framework, "otel": False}
    config.update(exclude_receive_span=None, exclude_send_span=None)
    if framework == "flask":
        config["otel"] = bool(getattr(app, "_is_instrumented_by_opentelemetry", False))
        return config
    asgi = sys.modules.get("opentelemetry.instrumentation.asgi")  # imported by whoever uses it
    node, depth = getattr(app, "middleware_stack", None), 0
    while asgi is not None and node is not None and depth < 32:
        if isinstance(node, asgi.OpenTelemetryMiddleware):
            config["otel"] = True
            config["exclude_receive_span"] = bool(node.exclude_receive_span)
            config["exclude_send_span"] = bool(node.exclude_send_span)
            break
        node, depth = getattr(node, "app", None), depth + 1
    return config


def install(app: Any, framework: str) -> Identify:
    """Apply ``BENCH_VARIANT``'s instrumentation to ``app`` (a ``framework`` app)."""
    installer = _INSTALLERS.get(VARIANT)
    if installer is None:
        raise RuntimeError(f"unknown BENCH_VARIANT {VARIANT!r}; known: {', '.join(_INSTALLERS)}")
    return installer(app, framework)


# --- the user's own OpenTelemetry set-up ------------------------------------------------------


def tracer_pipeline() -> None:
    """The pipeline a real app already runs: an SDK provider whose BatchSpanProcessor feeds
    an exporter. The exporter discards the spans, standing in for OTLP without network I/O."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class DiscardExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DiscardExporter()))
    trace.set_tracer_provider(provider)


def otel_instrument(app: Any, framework: str, exclude_spans: list[str] | None = None) -> None:
    """The standard instrumentor of ``framework``; ``exclude_spans`` drops the ASGI
    instrumentation's internal ``receive``/``send`` spans."""
    if framework == "fastapi":
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, exclude_spans=exclude_spans)  # type: ignore[arg-type]
    elif framework == "starlette" and exclude_spans:
        _starlette_without_internal_spans(app, exclude_spans)
    elif framework == "starlette":
        from opentelemetry.instrumentation.starlette import StarletteInstrumentor

        StarletteInstrumentor.instrument_app(app)
    elif framework == "flask" and not exclude_spans:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor.instrument_app(app)  # type: ignore[no-untyped-call]
    else:
        raise RuntimeError(f"exclude_spans is an ASGI option; {framework} has no receive/send spans")


def _starlette_without_internal_spans(app: Any, exclude_spans: list[str]) -> None:
    """What ``StarletteInstrumentor.instrument_app`` does, plus ``exclude_spans``, which its
    0.66b1 signature lacks (FastAPI's has it): the same middleware with the same options."""
    from opentelemetry.instrumentation import starlette as otel_starlette
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    app.add_middleware(
        OpenTelemetryMiddleware,
        excluded_urls=otel_starlette._excluded_urls,
        default_span_details=otel_starlette._get_default_span_details,
        exclude_spans=exclude_spans,
    )
    app._is_instrumented_by_opentelemetry = True


def _bare(app: Any, framework: str) -> Identify:
    return no_consumer


def _otel(app: Any, framework: str) -> Identify:
    tracer_pipeline()
    otel_instrument(app, framework)
    return no_consumer


def _otel_noint(app: Any, framework: str) -> Identify:
    tracer_pipeline()
    otel_instrument(app, framework, exclude_spans=["receive", "send"])
    return no_consumer


# --- spanlytics -------------------------------------------------------------------------------


def spanlytics_settings(variant: str) -> dict[str, Any]:
    """``spanlytics.configure()`` keywords of each spanlytics variant (remote ones to the stub)."""
    stub = os.environ.get("BENCH_STUB_URL", "http://127.0.0.1:9")
    common: dict[str, Any] = {
        "local_path": os.environ.get("BENCH_DB", "./spanlytics-bench.db"),
        "spool_dir": os.environ.get("BENCH_SPOOL_DIR"),
    }
    per_variant: dict[str, dict[str, Any]] = {
        "spanlytics-metrics": {"destinations": "local", "capture_bodies": False, "capture_headers": False},
        "spanlytics-local": {"destinations": "local"},
        "spanlytics-readme": {
            "destinations": "readme",
            "readme_api_key": README_API_KEY,
            "readme_base_url": stub,
        },
        "spanlytics-http": {"destinations": "http", "http_url": f"{stub}/ingest"},
        "spanlytics-otel": {"destinations": "otel"},
        "spanlytics-apitally": {
            "destinations": "apitally",
            "apitally_client_id": APITALLY_CLIENT_ID,
            "apitally_base_url": stub,
            "apitally_request_logging": True,
            # full logging, as the apitally0 peer logs: headers and bodies both ways
            **_known_settings(
                apitally_log_request_headers=True,
                apitally_log_request_body=True,
                apitally_log_response_body=True,
            ),
        },
        "spanlytics-apitally1": {
            "destinations": "apitally",
            "apitally_write_token": APITALLY_WRITE_TOKEN,
            "apitally_otlp_endpoint": stub,
            # headers and bodies both ways, as the apitally1 peer is configured
            **_known_settings(
                apitally_log_request_headers=True,
                apitally_log_request_body=True,
                apitally_log_response_body=True,
            ),
        },
    }
    return {**common, **per_variant[variant]}


def _known_settings(**options: Any) -> dict[str, Any]:
    """The options the installed spanlytics has: those of the Apitally destination may still
    change, and an unknown keyword makes ``configure()`` raise."""
    from dataclasses import fields

    from spanlytics import Settings

    known = {f.name for f in fields(Settings)}
    return {name: value for name, value in options.items() if name in known}


def _spanlytics(app: Any, framework: str) -> Identify:
    import spanlytics

    tracer_pipeline()
    spanlytics.configure(**spanlytics_settings(VARIANT))
    spanlytics.instrument_app(app)
    return lambda request: spanlytics.set_consumer(consumer_id(request))


def otel_signal_pipelines() -> None:
    """The logs and metrics pipelines an app running OpenTelemetry already has: SDK providers
    whose batch processor and periodic reader export OTLP/HTTP (to the stub)."""
    from opentelemetry import metrics
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    stub = os.environ.get("BENCH_STUB_URL", "http://127.0.0.1:9")
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(f"{stub}/v1/logs")))
    set_logger_provider(logger_provider)
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(f"{stub}/v1/metrics"), export_interval_millis=10_000
    )
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def _spanlytics_otel(app: Any, framework: str) -> Identify:
    otel_signal_pipelines()
    return _spanlytics(app, framework)


# --- peers, each in its own virtualenv --------------------------------------------------------


def _apitally1(app: Any, framework: str) -> Identify:
    """Apitally 1.x, an OpenTelemetry distribution: ``init()`` instruments the app itself and
    adds its span processor to the provider already set (the user's pipeline, as for
    spanlytics). Its OTLP endpoint has no ``init()`` argument: ``APITALLY_OTLP_ENDPOINT``
    (apitally/shared/config.py) points it at the stub."""
    apitally: Any = importlib.import_module("apitally")  # 1.x, in the peer's venv only

    tracer_pipeline()
    apitally.init(
        app,
        write_token=APITALLY_WRITE_TOKEN,
        env="bench",
        capture_request_headers=True,
        capture_request_body=True,
        capture_response_body=True,
    )
    return lambda request: apitally.set_consumer(consumer_id(request))


def _apitally0(app: Any, framework: str) -> Identify:
    """The Apitally 0.x middleware with request logging, bodies and headers included; its hub
    is ``APITALLY_HUB_BASE_URL`` (apitally/client/client_base.py, read at import).

    Except Flask's response bodies: 0.25.1's Flask middleware reads the response iterable to
    capture the body, then returns that same, now exhausted, iterable, so with Werkzeug 3 every
    response goes out empty (with its Content-Length). Logging them would measure a broken app.
    """
    options: dict[str, Any] = {
        "client_id": APITALLY_CLIENT_ID,
        "env": "bench",
        "enable_request_logging": True,
        "log_request_headers": True,
        "log_request_body": True,
        "log_response_body": framework != "flask",
    }
    module: Any = importlib.import_module(f"apitally.{framework}")
    if framework == "flask":
        app.wsgi_app = module.ApitallyMiddleware(app, **options)
        return lambda request: module.set_consumer(consumer_id(request))
    app.add_middleware(module.ApitallyMiddleware, **options)
    return lambda request: module.set_consumer(request, consumer_id(request))


def _readme_group(request: Any) -> dict[str, str] | None:
    """readme-metrics' grouping function: no group (readiness probes) means not logged."""
    if not request.headers.get(CONSUMER_HEADER):
        return None
    return {"api_key": consumer_id(request), "label": "benchmark"}


def _readme(app: Any, framework: str) -> Identify:
    """readme-metrics' Flask extension, posting to ``README_METRICS_SERVER``
    (readme_metrics/publisher.py). ``readme`` buffers 100 logs per POST; ``readme-default``
    keeps the SDK's default (1: one thread and one POST per request)."""
    from readme_metrics import MetricsApiConfig
    from readme_metrics.flask_readme import ReadMeMetrics

    buffering = {"buffer_length": 100} if VARIANT == "readme" else {}
    config = MetricsApiConfig(
        api_key=README_API_KEY,
        grouping_function=_readme_group,
        # Without a base URL the SDK asks dash.readme.com for one; this one is never fetched.
        base_log_url="http://docs.example.test",
        **buffering,
    )
    ReadMeMetrics(config).init_app(app)
    return no_consumer


_INSTALLERS: dict[str, Callable[[Any, str], Identify]] = {
    "bare": _bare,
    "otel": _otel,
    "otel-noint": _otel_noint,
    "spanlytics-metrics": _spanlytics,
    "spanlytics-local": _spanlytics,
    "spanlytics-readme": _spanlytics,
    "spanlytics-http": _spanlytics,
    "spanlytics-apitally": _spanlytics,
    "spanlytics-apitally1": _spanlytics,
    "spanlytics-otel": _spanlytics_otel,
    "apitally1": _apitally1,
    "apitally0": _apitally0,
    "readme": _readme,
    "readme-default": _readme,
}
