"""capture/options.py's process-wide state and app_routes.py's registry: one place each,
emptied by the public reset (the layering is tests/test_layout.py's)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import flask
from starlette.applications import Starlette

from spanlytics import app_routes
from spanlytics._process import reset_process
from spanlytics.capture.asgi import capture_asgi
from spanlytics.capture.options import PROCESS_CAPTURE, CaptureOptions, ProcessCapture
from spanlytics.capture.store import STORE, Capture


def test_reset_process_forgets_options_deferred_set_up_captures_and_apps() -> None:
    ran: list[str] = []
    PROCESS_CAPTURE.set_options(CaptureOptions(enabled=False))
    PROCESS_CAPTURE.defer(lambda: ran.append("set-up"))
    STORE.register(7, Capture("GET", "/", "", "http", (), bodies=False, limit=0))
    app = flask.Flask("reset")
    app_routes.register_app(app)
    before = app_routes.version()
    assert PROCESS_CAPTURE.options().enabled is False and len(STORE) == 1

    reset_process()

    assert PROCESS_CAPTURE.options().enabled is True  # from the (empty) environment again
    assert PROCESS_CAPTURE.deferred == ()
    PROCESS_CAPTURE.run_deferred()
    assert ran == [] and len(STORE) == 0
    assert app_routes.apps_info().routes == () and app_routes.version() > before


def test_deferred_set_up_runs_once_in_order_and_a_failure_is_contained() -> None:
    state = ProcessCapture()
    ran: list[int] = []

    def broken() -> None:
        raise RuntimeError("set-up failed")

    state.defer(lambda: ran.append(1))
    state.defer(broken)
    state.defer(lambda: ran.append(2))
    state.run_deferred()
    state.run_deferred()
    assert ran == [1, 2] and state.deferred == ()


def test_lifespan_shutdown_runs_the_registered_hook_without_importing_it() -> None:
    calls: list[str] = []
    state = ProcessCapture()
    state.lifespan_shutdown()  # nothing registered: nothing happens
    state.on_lifespan_shutdown(lambda: calls.append("flushed"))
    state.lifespan_shutdown()
    assert calls == ["flushed"]

    # the ASGI middleware hands the app's lifespan shutdown to the process-wide hook
    sent: list[str] = []
    original = PROCESS_CAPTURE.on_lifespan_shutdown(lambda: sent.append("hook"))
    assert original is not None  # spanlytics' flush, which otel/instrument.py registers
    try:

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "lifespan.shutdown.complete"})

        async def send(message: Any) -> None:
            sent.append(message["type"])

        asyncio.run(capture_asgi(app, {"type": "lifespan"}, lambda: None, send))  # type: ignore[arg-type]
    finally:
        PROCESS_CAPTURE.on_lifespan_shutdown(original)
    assert sent == ["hook", "lifespan.shutdown.complete"]


def test_registered_apps_are_held_weakly_and_their_routes_read() -> None:
    app = Starlette()
    app_routes.register_app(app)
    app_routes.register_app(app)  # once
    version = app_routes.version()
    assert app_routes.apps_info().framework == "starlette"
    del app
    gc.collect()
    assert app_routes.apps_info().framework is None and app_routes.version() == version
