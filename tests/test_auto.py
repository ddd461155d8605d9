"""Zero-code: the real `opentelemetry-instrument` CLI, env vars only, real servers."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from spanlytics.destinations.local import iter_records
from tests.conftest import db_bytes
from tests.support.otlp_receiver import otlp_receiver
from tests.support.servers import BIN, free_port, gunicorn_argv, poll_until, start_server, uvicorn_argv
from tests.test_examples import drive

INSTRUMENT = [str(BIN / "opentelemetry-instrument")]
NO_DISTRO = {"OTEL_PYTHON_DISTRO": "not-installed", "OTEL_PYTHON_CONFIGURATOR": "not-installed"}


def zero_code_env(db: Path, exporters: str = "spanlytics", **extra: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": exporters,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "zero-code-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "SPANLYTICS_LOCAL_PATH": str(db),
        **extra,
    }


def flask_run_argv(app: str, port: int) -> list[str]:
    return [str(BIN / "flask"), "--app", app, "run", "--host", "127.0.0.1", "--port", str(port)]


EXAMPLES: dict[str, Callable[[int], list[str]]] = {
    "fastapi-uvicorn": lambda port: uvicorn_argv("examples.fastapi_service.main:app", port),
    "flask-gunicorn": lambda port: gunicorn_argv(
        "examples.flask_app:app", port, "--worker-class", "gthread", "--threads", "4"
    ),
    "flask-run": lambda port: flask_run_argv("examples.flask_app:app", port),
}


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_examples_unchanged_under_opentelemetry_instrument(example: str, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    port = free_port()
    server = start_server(
        [*INSTRUMENT, *EXAMPLES[example](port)], port=port, log_dir=tmp_path, env=zero_code_env(db)
    )
    try:
        sent = drive(server.base_url)
    finally:
        server.stop()
    records = list(iter_records(db))
    stored = Counter(
        (r.method, r.route or "", r.status or 0, r.consumer.identifier if r.consumer else None)
        for r in records
    )
    assert stored == sent  # one record per request; health checks excluded
    login = next(r for r in records if r.route == "/auth/login")
    assert '"password":"[masked]"' in (login.request_body or "")
    assert all(r.response_body for r in records if r.status == 200)
    raw = db_bytes(db)
    assert b"wonderland-42" not in raw and b"sk_demo_" not in raw


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.c2lnbmF0dXJl"


PLAIN = {
    "fastapi-uvicorn": lambda port: uvicorn_argv("tests.support.plain_apps:fastapi_app", port),
    "flask-gunicorn": lambda port: gunicorn_argv("tests.support.plain_apps:flask_app", port),
    "flask-run": lambda port: flask_run_argv("tests.support.plain_apps:flask_app", port),
}


@pytest.mark.parametrize("distro", ["with-distro", "without-distro"])
@pytest.mark.parametrize("app", sorted(PLAIN))
def test_app_without_any_spanlytics_code(app: str, distro: str, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    port = free_port()
    env = zero_code_env(db, SPANLYTICS_CONSUMER_FROM="header:X-Client,jwt-claim:sub,basic-auth-user")
    if distro == "without-distro":
        env.update(NO_DISTRO)
    server = start_server([*INSTRUMENT, *PLAIN[app](port)], port=port, log_dir=tmp_path, env=env)
    base = server.base_url
    token = _jwt({"sub": "jwt-user", "scope": "read"})
    basic = base64.b64encode(b"basic-user:basic-pass-secret").decode()
    try:
        assert requests.get(f"{base}/items/1", headers={"X-Client": "header-user"}, timeout=5).ok
        assert requests.get(f"{base}/items/2", headers={"Authorization": f"Bearer {token}"}, timeout=5).ok
        assert requests.get(f"{base}/items/3", headers={"Authorization": f"Basic {basic}"}, timeout=5).ok
        assert requests.get(f"{base}/items/4", headers={"User-Agent": "kube-probe/1.29"}, timeout=5).ok
        login = requests.post(
            f"{base}/login", json={"username": "u", "password": "zero-pw-secret"}, timeout=5
        )
        assert login.json()["access_token"] == "tok-zero-code-secret"
    finally:
        server.stop()
    records = {r.path: r for r in iter_records(db)}
    assert set(records) == {"/items/1", "/items/2", "/items/3", "/login"}  # probe and health excluded
    consumers = {path: r.consumer.identifier if r.consumer else None for path, r in records.items()}
    assert consumers == {
        "/items/1": "header-user",
        "/items/2": "jwt-user",
        "/items/3": "basic-user",
        "/login": None,
    }
    assert records["/items/1"].route == "/items/{item_id}"
    assert records["/login"].request_body == '{"username":"u","password":"[masked]"}'
    raw = db_bytes(db)
    for secret in (b"zero-pw-secret", b"tok-zero-code-secret", b"basic-pass-secret", token.encode()):
        assert secret not in raw


def test_disabled_instrumentation_is_respected(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    port = free_port()
    env = zero_code_env(db, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="spanlytics")
    server = start_server(
        [*INSTRUMENT, *PLAIN["fastapi-uvicorn"](port)], port=port, log_dir=tmp_path, env=env
    )
    try:
        requests.post(f"{server.base_url}/login", json={"username": "u", "password": "p"}, timeout=5)
    finally:
        server.stop()
    (record,) = list(iter_records(db))  # the processor still records the span...
    assert record.route == "/login" and record.status == 200
    assert record.request_body is None and record.request_headers == ()  # ...but nothing was captured


def _normalise(spans: list[dict[str, Any]], port: int) -> list[tuple[Any, ...]]:
    port_re = re.compile(rf"\b{port}\b")
    out = []
    for span in spans:
        attrs = {
            k: port_re.sub("PORT", v) if isinstance(v, str) else ("PORT" if v == port else v)
            for k, v in span["attributes"].items()
            if k not in ("net.peer.port", "client.port")
        }
        resource = {
            k: v for k, v in span["resource"].items() if k not in ("process.pid", "service.instance.id")
        }
        out.append(
            (
                span["name"],
                span["kind"],
                span["scope"],
                bool(span["parent_span_id"]),
                span["status"],
                json.dumps(attrs, sort_keys=True),
                json.dumps(span["events"], sort_keys=True, default=str)[:80],
                json.dumps(resource, sort_keys=True),
            )
        )
    return sorted(out)


@pytest.mark.parametrize("example", ["fastapi-uvicorn", "flask-gunicorn"])
def test_otlp_side_receives_the_same_spans_with_spanlytics(example: str, tmp_path: Path) -> None:
    results = {}
    for exporters in ("otlp_proto_http", "otlp_proto_http,spanlytics"):
        with otlp_receiver() as (receiver, endpoint):
            db = tmp_path / f"{exporters.replace(',', '-')}.db"
            port = free_port()
            env = zero_code_env(db, exporters, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint)
            if "spanlytics" not in exporters:  # the examples call configure(): switch it off
                env["SPANLYTICS_ENABLED"] = "false"
            server = start_server(
                [*INSTRUMENT, *EXAMPLES[example](port)], port=port, log_dir=tmp_path, env=env
            )
            try:
                sent = drive(server.base_url)
                expected = sum(sent.values())
                poll_until(lambda: len(receiver.server_spans()) >= expected, 20, "OTLP spans")  # noqa: B023
            finally:
                server.stop()
            spans = [s for s in receiver.spans if s["attributes"].get("http.target") != "/healthz"]
            results[exporters] = _normalise([s for s in spans if "healthz" not in s["name"]], port)
            if exporters == "otlp_proto_http,spanlytics":
                assert len(list(iter_records(db))) == sum(sent.values())
            else:
                assert not db.exists()  # installed but not selected: spanlytics does nothing
    assert len(results["otlp_proto_http"]) >= sum(sent.values())
    assert results["otlp_proto_http,spanlytics"] == results["otlp_proto_http"]
    flat = json.dumps(results["otlp_proto_http,spanlytics"])
    for secret in ("wonderland-42", "sk_demo_", '"password"'):
        assert secret not in flat


def test_head_sampling_does_not_falsify_counts(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    total = 1000
    with otlp_receiver() as (receiver, endpoint):
        port = free_port()
        env = zero_code_env(
            db,
            "otlp_proto_http,spanlytics",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint,
            OTEL_TRACES_SAMPLER="parentbased_traceidratio",
            OTEL_TRACES_SAMPLER_ARG="0.1",
        )
        server = start_server(
            [*INSTRUMENT, *PLAIN["fastapi-uvicorn"](port)], port=port, log_dir=tmp_path, env=env
        )
        http = requests.Session()
        try:
            for i in range(total):
                assert http.get(f"{server.base_url}/items/{i % 7}?n={i}", timeout=5).ok
        finally:
            server.stop()
        exported = [
            s for s in receiver.server_spans() if s["attributes"].get("http.target", "").startswith("/items")
        ]
    records = list(iter_records(db))
    assert len(records) == total
    assert sorted(int(r.query.split("=")[1]) for r in records) == list(range(total))
    mean, sd = total * 0.1, math.sqrt(total * 0.1 * 0.9)
    assert mean - 5 * sd <= len(exported) <= mean + 5 * sd, len(exported)
    # every exported span belongs to a sampled request: no child span of an unsampled one leaked
    sampled_traces = {s["trace_id"] for s in receiver.server_spans()}
    assert {s["trace_id"] for s in receiver.spans} == sampled_traces


SERVERS: dict[str, Callable[[int], list[str]]] = {
    "gunicorn-sync-preload": lambda port: gunicorn_argv(
        "tests.support.plain_apps:flask_app", port, "-w", "2", "--preload"
    ),
    "gunicorn-sync": lambda port: gunicorn_argv("tests.support.plain_apps:flask_app", port, "-w", "2"),
    "gunicorn-gthread-preload": lambda port: gunicorn_argv(
        "tests.support.plain_apps:flask_app", port, "-w", "2", "--threads", "4", "--preload"
    ),
    "gunicorn-gthread": lambda port: gunicorn_argv(
        "tests.support.plain_apps:flask_app", port, "-w", "2", "--threads", "4"
    ),
    "uvicorn-workers-2": lambda port: uvicorn_argv(
        "tests.support.plain_apps:fastapi_app", port, "--workers", "2"
    ),
}


@pytest.mark.parametrize("setup", ["zero-code", "programmatic"])
@pytest.mark.parametrize("server_kind", sorted(SERVERS))
def test_every_request_counted_exactly_once(server_kind: str, setup: str, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    port = free_port()
    argv = SERVERS[server_kind](port)
    if setup == "zero-code":
        argv = [*INSTRUMENT, *argv]
        env = zero_code_env(db)
    else:
        argv = [a.replace("tests.support.plain_apps:", "tests.support.configured_apps:") for a in argv]
        env = {"SPANLYTICS_LOCAL_PATH": str(db)}
    server = start_server(argv, port=port, log_dir=tmp_path, env=env)
    total = 120
    try:
        for i in range(total):
            # a fresh connection each time, so both workers serve requests
            assert requests.get(
                f"{server.base_url}/items/1?n={i}", timeout=5, headers={"Connection": "close"}
            ).ok
    finally:
        server.stop()
    counts = Counter(r.query for r in iter_records(db))
    assert counts == Counter(f"n={i}" for i in range(total))
    pids = set(re.findall(r"Booting worker with pid: (\d+)|Started server process \[(\d+)\]", server.log()))
    assert len(pids) >= 2, server.log()


def test_instrumentor_patches_and_uninstrument_restores(tmp_path: Path) -> None:
    import flask.app
    from fastapi.testclient import TestClient
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from starlette.applications import Starlette

    import spanlytics
    from spanlytics.otel.auto import SpanlyticsInstrumentor
    from tests.support import plain_apps

    originals = (Starlette.__call__, flask.app.Flask.__call__)
    provider = TracerProvider()
    processor = spanlytics.configure(tracer_provider=provider, local_path=str(tmp_path / "s.db"))
    assert processor is not None
    FastAPIInstrumentor.instrument_app(plain_apps.fastapi_app, tracer_provider=provider)
    FlaskInstrumentor.instrument_app(plain_apps.flask_app, tracer_provider=provider)
    instrumentor = SpanlyticsInstrumentor()
    instrumentor.instrument()
    try:
        assert (Starlette.__call__, flask.app.Flask.__call__) != originals
        TestClient(plain_apps.fastapi_app).post("/login", json={"username": "a", "password": "p"})
        with plain_apps.flask_app.test_client().post("/login", json={"username": "b", "password": "p"}):
            pass
    finally:
        instrumentor.uninstrument()
        FastAPIInstrumentor.uninstrument_app(plain_apps.fastapi_app)
        FlaskInstrumentor.uninstrument_app(plain_apps.flask_app)
    assert (Starlette.__call__, flask.app.Flask.__call__) == originals
    assert processor.force_flush()
    bodies = sorted((json.loads(r.request_body or "{}") for r in iter_records(tmp_path / "s.db")), key=repr)
    assert sorted(b["username"] for b in bodies) == ["a", "b"]
    assert all(b["password"] == "[masked]" for b in bodies)
    provider.shutdown()


# -- opentelemetry-distro's default exporters (issue 12, item 16) -----------------------------

WARNING_START = "spanlytics records nothing: OpenTelemetry's auto-initialisation will stop"


@pytest.mark.parametrize("command", ["distro-defaults", "documented"])
def test_missing_distro_default_exporters_are_named_in_one_line(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.util._importlib_metadata import entry_points

    # the case at hand: the distro's default (otlp over gRPC) has no exporter installed here
    assert not tuple(entry_points(group="opentelemetry_metrics_exporter", name="otlp_proto_grpc"))
    for name in ("OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "store.db"
    env = {"OTEL_TRACES_EXPORTER": "spanlytics", "SPANLYTICS_LOCAL_PATH": str(db)}
    if command == "documented":
        env.update(OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none")
    port = free_port()
    server = start_server(
        [*INSTRUMENT, *PLAIN["fastapi-uvicorn"](port)], port=port, log_dir=tmp_path, env=env
    )
    try:
        assert requests.get(f"{server.base_url}/items/1", timeout=5).ok
    finally:
        server.stop()
    warnings = [line for line in server.log().splitlines() if line.startswith(WARNING_START)]
    if command == "distro-defaults":
        assert len(warnings) == 1, server.log()
        (line,) = warnings
        assert "OTEL_METRICS_EXPORTER=otlp needs exporter 'otlp_proto_grpc'" in line
        assert "OTEL_LOGS_EXPORTER=otlp needs exporter 'otlp_proto_grpc'" in line
        assert "Set OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none" in line
        assert not db.exists()  # what the line warns about: nothing recorded
    else:
        assert warnings == [], server.log()
        (record,) = list(iter_records(db))
        assert record.route == "/items/{item_id}"


def test_zero_code_asgi_internal_spans_off_by_env(tmp_path: Path) -> None:
    """SPANLYTICS_ASGI_INTERNAL_SPANS=false also applies to the instrumentation a zero-code
    run applies (by default the OTLP side gets every span: see the parity test above)."""
    db = tmp_path / "store.db"
    with otlp_receiver() as (receiver, endpoint):
        port = free_port()
        env = zero_code_env(
            db,
            "otlp_proto_http,spanlytics",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint,
            SPANLYTICS_ASGI_INTERNAL_SPANS="false",
        )
        server = start_server(
            [*INSTRUMENT, *PLAIN["fastapi-uvicorn"](port)], port=port, log_dir=tmp_path, env=env
        )
        try:
            for i in range(3):
                assert requests.get(f"{server.base_url}/items/{i}", timeout=5).ok
            poll_until(lambda: len(receiver.server_spans()) >= 3, 20, "OTLP spans")
        finally:
            server.stop()
        names = [s["name"] for s in receiver.spans if "healthz" not in s["name"]]
    assert names == ["GET /items/{item_id}"] * 3
    assert len(list(iter_records(db))) == 3


def test_no_warning_for_an_app_that_sets_spanlytics_up_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """spanlytics not listed as an exporter: the app imports it later and configure()s it
    itself, which records whatever the aborted auto-initialisation left undone."""
    for name in ("OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console"}
    script = "import spanlytics; print('imported')"
    done = subprocess.run(
        [*INSTRUMENT, sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "imported", done.stderr
    assert "Failed to auto initialize" in done.stderr  # the aborted set-up is the case at hand
    assert WARNING_START not in done.stderr


@pytest.mark.parametrize(
    ("exporters", "distro", "kept"),
    [
        ("spanlytics", "with-distro", False),  # nothing but spanlytics would see them
        ("spanlytics", "without-distro", False),
        ("otlp_proto_http,spanlytics", "with-distro", True),  # the OTLP side gets its defaults
    ],
)
def test_zero_code_keeps_internal_spans_unless_spanlytics_is_alone(
    exporters: str, distro: str, kept: bool, tmp_path: Path
) -> None:
    port = free_port()
    env = zero_code_env(tmp_path / "store.db", exporters)
    if distro == "without-distro":
        env.update(NO_DISTRO)
    argv = uvicorn_argv("tests.support.internal_spans_app:app", port)
    server = start_server([*INSTRUMENT, *argv], port=port, log_dir=tmp_path, env=env)
    try:
        flags = requests.get(f"{server.base_url}/internal-spans", timeout=5).json()
    finally:
        server.stop()
    assert flags == {"receive": kept, "send": kept}
