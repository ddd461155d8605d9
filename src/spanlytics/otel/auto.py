"""Zero-code set-up: the entry points ``opentelemetry-instrument`` loads.

* ``opentelemetry_traces_exporter`` ``spanlytics`` -> :class:`~spanlytics.SpanlyticsExporter`
  (built with no arguments by the SDK configurator; it reads ``SPANLYTICS_*``).
* ``opentelemetry_instrumentor`` ``spanlytics`` -> :class:`SpanlyticsInstrumentor`: capture
  on every FastAPI, Starlette and Flask app (``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=spanlytics``
  turns it off; ``uninstrument()`` undoes it).
* ``opentelemetry_post_instrument`` ``spanlytics`` -> :func:`post_instrument`: adds the
  spanlytics span processor to the global TracerProvider.

Why a post-instrument hook rather than a configurator or distro: only the first
configurator found is used, and the user's distro (``opentelemetry-distro`` or a vendor's)
must keep that role; a hook composes with any of them, and with none. The hook attaches at
once when an SDK TracerProvider exists (a distro configured one). Without a distro nothing
configures the SDK at start-up, and the app may set its own provider while it imports; so
the hook then waits for the first request and attaches to whatever provider is set by then
(creating one only if there is still none).

spanlytics is active in zero-code runs when ``OTEL_TRACES_EXPORTER`` lists ``spanlytics``
or ``SPANLYTICS_ENABLED=true`` is set explicitly; merely being installed changes nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar, Literal

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import TracerProvider

from spanlytics._process import on_reset
from spanlytics._throttle import ThrottledLogger
from spanlytics.app_routes import register_app
from spanlytics.capture.asgi import capture_asgi
from spanlytics.capture.options import PROCESS_CAPTURE, CaptureOptions
from spanlytics.capture.wsgi import capture_wsgi
from spanlytics.config import Settings
from spanlytics.otel.instrument import OTEL_APPLIED_MARK, apply_internal_spans_choice

_log = ThrottledLogger(logging.getLogger("spanlytics.auto"))
_logger = logging.getLogger("spanlytics")
_ROUTES_MARK = "_spanlytics_routes_registered"


def selected(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this zero-code run asked for spanlytics."""
    env = os.environ if environ is None else environ
    exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    explicit = env.get("SPANLYTICS_ENABLED", "").strip().lower() in ("1", "true", "yes", "on")
    return "spanlytics" in exporters or explicit


class SpanlyticsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Installs request/response capture on every Starlette/FastAPI and Flask app.

    It patches the frameworks' base classes (``Starlette.__call__`` and
    ``flask.app.Flask.__call__``), so the capture sits outside the whole middleware stack
    and the OpenTelemetry middleware, whatever order the instrumentors were loaded in, and
    for apps created before or after it ran.
    """

    _originals: ClassVar[dict[tuple[Any, str], Callable[..., Any]]] = {}

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # it instruments whichever of the frameworks is installed

    def _instrument(self, **kwargs: Any) -> None:
        try:
            from starlette.applications import Starlette
        except ImportError:
            pass
        else:
            original_asgi = Starlette.__call__

            async def starlette_call(self: Starlette, scope: Any, receive: Any, send: Any) -> None:
                if "app" not in scope and not getattr(self, _ROUTES_MARK, False):  # not a mounted sub-app
                    setattr(self, _ROUTES_MARK, True)
                    register_app(self)

                async def app(scope: Any, receive: Any, send: Any) -> None:
                    if self.middleware_stack is None and not getattr(self, OTEL_APPLIED_MARK, False):
                        # built here, as Starlette would, to make the internal-spans choice
                        # for the instrumentation the zero-code run applied: at the first
                        # request, once a deferred set-up has attached spanlytics
                        stack = self.build_middleware_stack()
                        self.middleware_stack = stack
                        PROCESS_CAPTURE.defer(
                            lambda: apply_internal_spans_choice(
                                stack, PROCESS_CAPTURE.options().internal_spans
                            )
                        )
                        if scope.get("type") == "http":  # the capture already ran earlier set-ups
                            PROCESS_CAPTURE.run_deferred()
                    await original_asgi(self, scope, receive, send)

                await capture_asgi(app, scope, receive, send)

            self._patch(Starlette, "__call__", starlette_call)
        try:
            import flask.app
        except ImportError:
            return
        original_wsgi = flask.app.Flask.__call__

        def flask_call(self: flask.app.Flask, environ: Any, start_response: Any) -> Any:
            if not getattr(self, _ROUTES_MARK, False):
                setattr(self, _ROUTES_MARK, True)
                register_app(self)

            def app(env: Any, sr: Any) -> Any:
                return original_wsgi(self, env, sr)

            return capture_wsgi(app, environ, start_response)

        self._patch(flask.app.Flask, "__call__", flask_call)

    def _patch(self, owner: Any, name: str, replacement: Callable[..., Any]) -> None:
        key = (owner, name)
        if key not in self._originals:
            self._originals[key] = getattr(owner, name)
            setattr(owner, name, replacement)

    def _uninstrument(self, **kwargs: Any) -> None:
        for (owner, name), original in list(self._originals.items()):
            setattr(owner, name, original)
            del self._originals[(owner, name)]


def _attach_to_global(settings: Settings) -> None:
    from spanlytics.otel.configure import attach, configure
    from spanlytics.otel.exporter import waiting_for_a_processor

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        configure()  # still no SDK provider at the first request: create one
        return
    # OTEL_TRACES_EXPORTER=spanlytics: the SDK built our exporter inside a
    # BatchSpanProcessor. Our processor takes over its pipeline's feed (every recorded
    # server span, sampled or not); its export() then queues nothing, so nothing counts twice.
    attach(provider, settings, waiting_for_a_processor())


def post_instrument(**kwargs: Any) -> None:
    """``opentelemetry_post_instrument`` hook: attach spanlytics to the global provider."""
    try:
        settings = Settings.resolve()
        if not selected():
            PROCESS_CAPTURE.set_options(CaptureOptions(enabled=False))
            return
        PROCESS_CAPTURE.set_options(CaptureOptions.from_settings(settings))
        from spanlytics.otel.configure import install_sigterm_flush

        install_sigterm_flush()  # now, on the main thread: a deferred set-up runs on a worker
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            _attach_to_global(settings)
        else:
            PROCESS_CAPTURE.defer(lambda: _attach_to_global(settings))
    except Exception as exc:  # a broken set-up must never stop the app from starting
        _log.failure("auto.post_instrument", "spanlytics zero-code set-up failed", exc)


EXPORTER_VARIABLES: tuple[tuple[str, Literal["traces", "metrics", "logs"], str], ...] = (
    # (variable, signal, entry-point group), in the order the SDK configurator imports them:
    # a name without an entry point raises there, and the whole auto-initialisation stops.
    ("OTEL_TRACES_EXPORTER", "traces", "opentelemetry_traces_exporter"),
    ("OTEL_METRICS_EXPORTER", "metrics", "opentelemetry_metrics_exporter"),
    ("OTEL_LOGS_EXPORTER", "logs", "opentelemetry_logs_exporter"),
)
EXPORTER_PACKAGES = {
    # entry-point name -> the package that provides it, for the hint
    "otlp_proto_grpc": "opentelemetry-exporter-otlp-proto-grpc",
    "otlp_proto_http": "opentelemetry-exporter-otlp-proto-http",
}
_checked: set[str] = set()
"""Checks done once per process (``reset_process()`` forgets them)."""
on_reset(_checked.clear)


def _sdk_configurator_runs() -> bool:
    """Whether auto-initialisation runs a configurator (the only thing that builds exporters)."""
    from opentelemetry.util._importlib_metadata import entry_points

    wanted = os.environ.get("OTEL_PYTHON_CONFIGURATOR")
    names = [ep.name for ep in entry_points(group="opentelemetry_configurator")]
    return bool(names) if wanted is None else wanted in names


def missing_exporters() -> list[tuple[str, str, str]]:
    """``(variable, value, entry-point name)`` of each exporter the SDK configurator would
    be asked for (``opentelemetry-distro`` defaults all three variables to ``otlp``, that is
    gRPC) that no installed package provides."""
    from opentelemetry.sdk._configuration import _get_exporter_names
    from opentelemetry.util._importlib_metadata import entry_points

    missing = []
    for variable, signal, group in EXPORTER_VARIABLES:
        # the SDK's own name resolution (``otlp`` -> ``otlp_proto_grpc`` or ``_http`` by
        # OTEL_EXPORTER_OTLP_*PROTOCOL), so the check agrees with what the configurator does
        for name in _get_exporter_names(signal):
            if not tuple(entry_points(group=group, name=name)):
                missing.append((variable, os.environ.get(variable, ""), name))
    return missing


def warn_if_zero_code_set_up_aborts() -> None:
    """Say so, once, when ``opentelemetry-instrument`` is about to give up.

    ``opentelemetry-instrument`` imports the traces exporters (ours among them) before the
    metrics and logs ones; when one of those has no entry point, the configurator raises,
    auto-initialisation stops before any instrumentor or post-instrument hook runs, and
    nothing is recorded. Called when spanlytics is imported during such a run; only when
    ``OTEL_TRACES_EXPORTER`` lists spanlytics, because then that import is the configurator
    loading our exporter (an app importing spanlytics later to call ``configure()`` itself
    would record whatever the configurator did).
    """
    if "exporters" in _checked:
        return
    _checked.add("exporters")
    traces = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if "spanlytics" not in (name.strip().lower() for name in traces.split(",")):
        return
    try:
        if not _sdk_configurator_runs():
            return
        missing = missing_exporters()
    except Exception as exc:  # the check must never be what breaks start-up
        _log.failure("auto.exporter_check", "could not check the OpenTelemetry exporters", exc)
        return
    if not missing:
        return
    unset = " ".join(dict.fromkeys(f"{variable}=none" for variable, _, _ in missing))
    packages = " ".join(
        dict.fromkeys(EXPORTER_PACKAGES.get(name, f"a package providing '{name}'") for _, _, name in missing)
    )
    named = ", ".join(f"{variable}={value} needs exporter '{name}'" for variable, value, name in missing)
    message = (
        f"spanlytics records nothing: OpenTelemetry's auto-initialisation will stop because no "
        f"installed package provides an exporter it was asked for ({named}). "
        f"Set {unset}, or pip install {packages}."
    )
    _logger.warning(message)
    if not _logger.hasHandlers() and logging.lastResort is None:
        print(message, file=sys.stderr)  # nobody else would show it
