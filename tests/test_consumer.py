"""consumer/value.py and consumer/handler.py: validation, and set_consumer from every kind of handler."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import flask
import pytest
import requests
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.flask import FlaskInstrumentor

import spanlytics
from spanlytics.consumer.value import Consumer, coerce_consumer, make_consumer
from spanlytics.destinations.local import iter_records
from tests.conftest import Pipeline
from tests.support.servers import free_port, gunicorn_argv, start_server


def test_make_consumer_validation(caplog: pytest.LogCaptureFixture) -> None:
    assert make_consumer("  acme  ", " Acme ", "pro") == Consumer("acme", "Acme", "pro")
    assert make_consumer(42) == Consumer("42")
    assert make_consumer("x" * 128) is not None
    with caplog.at_level(logging.WARNING, "spanlytics"):
        assert make_consumer("x" * 129) is None
        assert make_consumer("") is None
        assert make_consumer("   ") is None
        assert make_consumer(True) is None
        assert make_consumer(["a"]) is None
        assert make_consumer("acme", name="n" * 65) == Consumer("acme")
        assert make_consumer("acme", group=7) == Consumer("acme")
        assert make_consumer("acme", email="not-an-email") == Consumer("acme")
    assert "x" * 129 not in caplog.text  # warnings never carry the value
    assert "consumer identifier longer than 128" in caplog.text


def test_coerce_consumer_shapes() -> None:
    assert coerce_consumer(None) is None
    assert coerce_consumer("acme") == Consumer("acme")
    assert coerce_consumer({"id": "a", "name": "A", "email": "a@x.io"}) == Consumer("a", "A", None, "a@x.io")
    assert coerce_consumer({"identifier": "b", "group": "g"}) == Consumer("b", group="g")
    assert coerce_consumer({"name": "no id"}) is None


def _fastapi_app(pipeline: Pipeline) -> FastAPI:
    app = FastAPI()

    def auth(request: Request) -> None:
        spanlytics.set_consumer("dep-consumer", name="From dependency", group="deps")

    @app.get("/async")
    async def async_endpoint() -> dict[str, bool]:
        spanlytics.set_consumer("async-consumer", group="a")
        return {"ok": True}

    @app.get("/sync")
    def sync_endpoint() -> dict[str, bool]:  # runs in the thread pool
        spanlytics.set_consumer("sync-consumer", group="s")
        return {"ok": True}

    @app.get("/nested")
    def nested() -> dict[str, bool]:
        with trace.get_tracer("t", tracer_provider=pipeline.provider).start_as_current_span("work"):
            spanlytics.set_consumer("nested-consumer", name="Nested")
        return {"ok": True}

    @app.get("/dep", dependencies=[Depends(auth)])
    def dep() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/state")
    def state(request: Request) -> dict[str, bool]:
        request.state.spanlytics_consumer = {"id": "state-consumer", "group": "st"}
        return {"ok": True}

    @app.get("/invalid")
    def invalid() -> dict[str, bool]:
        spanlytics.set_consumer("x" * 500)
        return {"ok": True}

    FastAPIInstrumentor.instrument_app(app, tracer_provider=pipeline.provider)
    return spanlytics.instrument_app(app)


def test_set_consumer_everywhere_in_fastapi(pipeline: Pipeline) -> None:
    client = TestClient(_fastapi_app(pipeline))
    for path in ("/async", "/sync", "/nested", "/dep", "/state", "/invalid"):
        assert client.get(path).json() == {"ok": True}
    consumers = {r.path: r.consumer for r in pipeline.records()}
    assert consumers == {
        "/async": Consumer("async-consumer", group="a"),
        "/sync": Consumer("sync-consumer", group="s"),
        "/nested": Consumer("nested-consumer", name="Nested"),
        "/dep": Consumer("dep-consumer", "From dependency", "deps"),
        "/state": Consumer("state-consumer", group="st"),
        "/invalid": None,
    }
    # set_consumer writes plain attributes on the server span, even from a nested span
    servers = {
        s.attributes.get("http.target"): dict(s.attributes)
        for s in pipeline.user_exporter.get_finished_spans()
        if s.kind is trace.SpanKind.SERVER and s.attributes
    }
    assert servers["/nested"]["spanlytics.consumer.id"] == "nested-consumer"
    assert servers["/sync"]["spanlytics.consumer.group"] == "s"
    assert "spanlytics.consumer.id" not in servers["/state"]  # side channel only


def test_set_consumer_in_flask_and_precedence(pipeline: Pipeline) -> None:
    def identify(view: Any) -> object:
        return view.headers.get("x-who")

    spanlytics.configure(tracer_provider=pipeline.provider)
    app = flask.Flask(__name__)

    @app.get("/view")
    def view() -> dict[str, bool]:
        spanlytics.set_consumer("flask-consumer", name="Flask", group="f", email="ops@flask.example")
        return {"ok": True}

    @app.get("/plain")
    def plain() -> dict[str, bool]:
        return {"ok": True}

    FlaskInstrumentor.instrument_app(app, tracer_provider=pipeline.provider)
    spanlytics.instrument_app(app, options=spanlytics.CaptureOptions(identify_consumer=identify))
    client = app.test_client()

    def get(path: str, **headers: str) -> Any:
        with client.get(path, headers=headers) as response:  # a server closes the iterable
            return response.json

    assert get("/view", X_Who="callback") == {"ok": True}
    assert get("/plain", X_Who="callback") == {"ok": True}
    get("/plain", baggage="spanlytics.consumer.id=from-baggage,other=1")
    records = pipeline.records()
    assert [r.consumer for r in records] == [
        Consumer("flask-consumer", "Flask", "f", "ops@flask.example"),  # set_consumer beats callback
        Consumer("callback"),
        Consumer("from-baggage"),
    ]


def test_set_consumer_outside_a_request_is_harmless() -> None:
    spanlytics.set_consumer("nobody")  # no capture, no span: nothing happens, nothing raises


def test_wsgi_environ_consumer_key_as_documented_over_a_real_socket(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    port = free_port()
    server = start_server(
        gunicorn_argv("tests.support.environ_consumer_app:app", port),
        port=port,
        log_dir=tmp_path,
        env={"SPANLYTICS_LOCAL_PATH": str(db), "SPANLYTICS_FLUSH_INTERVAL": "0.05"},
    )
    try:
        for path in ("/documented", "/alias"):
            assert requests.get(f"{server.base_url}{path}", timeout=10).json() == {"ok": True}
    finally:
        server.stop()  # SIGTERM: gunicorn's worker flushes spanlytics
    consumers = {r.path: r.consumer for r in iter_records(db)}
    assert consumers == {
        "/documented": Consumer("environ-consumer", group="wsgi"),
        "/alias": Consumer("alias-consumer"),
    }
