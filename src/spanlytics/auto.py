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
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import TracerProvider

from spanlytics._throttle import ThrottledLogger
from spanlytics.capture.asgi import capture_asgi
from spanlytics.capture.options import CaptureOptions, defer_until_first_request, set_process_options
from spanlytics.capture.routes import register_app
from spanlytics.capture.wsgi import capture_wsgi
from spanlytics.config import Settings

_log = ThrottledLogger(logging.getLogger("spanlytics.auto"))
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
    from spanlytics._configure import attach, configure
    from spanlytics.exporter import LIVE_EXPORTERS

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        configure()  # still no SDK provider at the first request: create one
        return
    # OTEL_TRACES_EXPORTER=spanlytics: the SDK built our exporter inside a
    # BatchSpanProcessor. Feed that one from our processor (every recorded server span,
    # sampled or not); its own export() then stands down, so nothing is counted twice.
    built = next((e for e in list(LIVE_EXPORTERS) if not e.fed_by_processor), None)
    attach(provider, settings, built)


def post_instrument(**kwargs: Any) -> None:
    """``opentelemetry_post_instrument`` hook: attach spanlytics to the global provider."""
    try:
        settings = Settings.resolve()
        if not selected():
            set_process_options(CaptureOptions(enabled=False))
            return
        set_process_options(CaptureOptions.from_settings(settings))
        from spanlytics._configure import install_sigterm_flush

        install_sigterm_flush()  # now, on the main thread: a deferred set-up runs on a worker
        if isinstance(trace.get_tracer_provider(), TracerProvider):
            _attach_to_global(settings)
        else:
            defer_until_first_request(lambda: _attach_to_global(settings))
    except Exception as exc:  # a broken set-up must never stop the app from starting
        _log.failure("auto.post_instrument", "spanlytics zero-code set-up failed", exc)
