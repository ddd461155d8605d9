"""Acceptance over real sockets: FastAPI under uvicorn and Flask under gunicorn, SIGTERM,
then the local store and ``spanlytics report --json``."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from spanlytics.destinations.local import iter_records
from spanlytics.record import RequestRecord
from tests.support.otlp_receiver import otlp_receiver
from tests.support.servers import free_port, gunicorn_argv, start_server, uvicorn_argv

SERVERS = {
    "fastapi-uvicorn": lambda port: uvicorn_argv("tests.support.edge_apps:fastapi_app", port),
    "flask-gunicorn": lambda port: gunicorn_argv(
        "tests.support.edge_apps:flask_app", port, "--worker-class", "gthread", "--threads", "4"
    ),
}
SECRET_TOKEN = "Bearer sk_live_7f3c9a1e55b0"
ECHO_PAYLOAD = {"username": "bob", "password": "hunter2-secret", "items": [{"apiKey": "k-123-secret"}]}
ECHO_BYTES = json.dumps(ECHO_PAYLOAD).encode()


def run_traffic(base: str) -> list[dict[str, Any]]:
    """Requests from several consumers; returns what each expects to find in the store."""
    expected: list[dict[str, Any]] = []
    http = requests.Session()

    def call(method: str, path: str, expect: dict[str, Any], **kwargs: Any) -> requests.Response:
        response = http.request(method, base + path, timeout=10, **kwargs)
        path = path.split("?", maxsplit=1)[0]
        expected.append({"method": method, "path": path, "status": response.status_code, **expect})
        return response

    # set_consumer inside the handler
    call("GET", "/items/1?consumer=acme", {"route": "/items/{item_id}", "consumer": ("acme", "set")})
    call("GET", "/items/2?consumer=acme", {"route": "/items/{item_id}", "consumer": ("acme", "set")})
    # the identify_consumer callback
    call(
        "GET",
        "/items/3",
        {"route": "/items/{item_id}", "consumer": ("globex", "cb")},
        headers={"X-Callback-Consumer": "globex"},
    )
    # the configured header (SPANLYTICS_CONSUMER_HEADER=X-Consumer-Id)
    call(
        "POST",
        "/echo",
        {"route": "/echo", "consumer": ("initech", None), "body": True},
        headers={
            "X-Consumer-Id": "initech",
            "Authorization": SECRET_TOKEN,
            "Content-Type": "application/json",
        },
        data=ECHO_BYTES,
    )
    # a callback that raises: no consumer, response unchanged
    r = call("GET", "/text", {"route": "/text", "consumer": None}, headers={"X-Callback-Consumer": "raise"})
    assert r.text == "hello"
    # malformed JSON under a JSON content type
    r = call(
        "POST",
        "/echo",
        {"route": "/echo", "consumer": None},
        data=b'{"password": "unterminated-secret',
        headers={"Content-Type": "application/json"},
    )
    assert r.content == b'{"password": "unterminated-secret'
    call("GET", "/nope", {"route": None, "consumer": None})  # unmatched route
    call("GET", "/boom", {"route": "/boom", "consumer": None})  # unhandled exception -> 500
    return expected


def check_records(records: list[RequestRecord], expected: list[dict[str, Any]]) -> None:
    assert len(records) == len(expected), [(r.method, r.path, r.status) for r in records]
    for record, want in zip(records, expected, strict=True):
        assert (record.method, record.path, record.status) == (want["method"], want["path"], want["status"])
        assert record.route == want["route"]
        if want["consumer"] is None:
            assert record.consumer is None
        else:
            assert record.consumer is not None
            assert (record.consumer.identifier, record.consumer.group) == want["consumer"]
        assert record.duration_ms > 0
        assert record.url.startswith("http://127.0.0.1:")
        assert record.client_ip == "127.0.0.1"
        assert record.response_size is not None and record.response_size >= 0
        assert dict(record.request_headers)["host"].startswith("127.0.0.1:")
    echo = next(r for r, w in zip(records, expected, strict=True) if w.get("body"))
    assert echo.request_size == echo.response_size == len(ECHO_BYTES)
    assert not echo.request_body_truncated
    body = json.loads(echo.request_body or "")
    assert body["username"] == "bob"
    assert body["password"] == "[masked]"
    assert body["items"][0]["apiKey"] == "[masked]"
    assert dict(echo.request_headers)["authorization"] == "[masked]"
    assert {m.path for m in echo.masked} >= {"request.headers.authorization", "request.body.password"}
    boom = records[-1]
    assert boom.status == 500
    assert boom.exception is not None and boom.exception.type.endswith("ValueError")


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_records_after_sigterm(server: str, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    port = free_port()
    proc = start_server(
        SERVERS[server](port),
        port=port,
        log_dir=tmp_path,
        env={"SPANLYTICS_LOCAL_PATH": str(db), "SPANLYTICS_CONSUMER_HEADER": "X-Consumer-Id"},
    )
    try:
        expected = run_traffic(proc.base_url)
    finally:
        assert proc.stop() in (0, -15), proc.log()
    records = sorted((r for r in iter_records(db) if r.path != "/healthz"), key=lambda r: r.start_time_ns)
    check_records(records, expected)
    log = proc.log()
    for secret in ("hunter2-secret", "k-123-secret", "sk_live_7f3c9a1e55b0", "secret-token-123"):
        assert secret not in log

    report = subprocess.run(
        [sys.executable, "-m", "spanlytics.cli", "report", "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(report.stdout)
    endpoints = {(e["method"], e["route"]): e for e in data["endpoints"]}
    assert endpoints[("GET", "/items/{item_id}")]["count"] == 3
    assert endpoints[("POST", "/echo")]["count"] == 2
    assert endpoints[("GET", "/boom")]["server_error_count"] == 1
    assert endpoints[("GET", None)]["error_count"] == 1
    consumers = {c["consumer_id"]: c for c in data["consumers"]}
    assert consumers["acme"]["count"] == 2
    assert consumers["acme"]["name"] == "Consumer acme"
    assert consumers["globex"]["count"] == 1
    assert consumers["initech"]["count"] == 1


def comparable(record: RequestRecord) -> dict[str, Any]:
    data = {
        name: getattr(record, name)
        for name in record.__dataclass_fields__
        if name not in ("record_id", "trace_id", "span_id", "start_time_ns", "duration_ms")
    }
    drop = {"host", "date", "x-request-port"}
    data["request_headers"] = tuple(h for h in record.request_headers if h[0] not in drop)
    data["response_headers"] = tuple(h for h in record.response_headers if h[0] not in drop)
    data["url"] = record.url.split("/", 3)[-1]
    data["host"] = None
    if record.exception is not None:
        data["exception"] = record.exception.type
    return data


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_semconv_modes_give_identical_records(server: str, tmp_path: Path) -> None:
    results = {}
    for mode in ("default", "http", "http/dup"):
        db = tmp_path / f"{mode.replace('/', '-')}.db"
        port = free_port()
        env = {"SPANLYTICS_LOCAL_PATH": str(db), "SPANLYTICS_CONSUMER_HEADER": "X-Consumer-Id"}
        if mode != "default":
            env["OTEL_SEMCONV_STABILITY_OPT_IN"] = mode
        proc = start_server(SERVERS[server](port), port=port, log_dir=tmp_path, env=env)
        try:
            run_traffic(proc.base_url)
        finally:
            proc.stop()
        records = sorted(iter_records(db), key=lambda r: r.start_time_ns)
        results[mode] = [comparable(r) for r in records if r.path != "/healthz"]
    assert len(results["default"]) == 8
    assert results["default"] == results["http"] == results["http/dup"]


# -- the user's other exporters see the same spans (issue 12, item 17) ------------------------

PARITY_SERVERS = {
    "fastapi-uvicorn": lambda port: uvicorn_argv("tests.support.span_parity_apps:fastapi_app", port),
    "flask-gunicorn": lambda port: gunicorn_argv(
        "tests.support.span_parity_apps:flask_app", port, "--worker-class", "gthread", "--threads", "4"
    ),
}
PARITY_REQUESTS = 3


@dataclass
class ParityRun:
    spans: list[tuple[str, str]]  # what the user's in-memory exporter received
    span_ids: int  # spans the SDK started, seen by any exporter or none
    records: list[RequestRecord]


def run_parity_app(server: str, tmp_path: Path, name: str, **env: str) -> ParityRun:
    """Serve a parity app over a real socket, POST a few bodies, read what was seen."""
    db = tmp_path / f"{name}.db"
    port = free_port()
    full_env = {"OTEL_PYTHON_EXCLUDED_URLS": "healthz,spans", "SPANLYTICS_LOCAL_PATH": str(db), **env}
    proc = start_server(PARITY_SERVERS[server](port), port=port, log_dir=tmp_path, env=full_env)
    try:
        http = requests.Session()
        for i in range(PARITY_REQUESTS):
            response = http.post(f"{proc.base_url}/echo", json={"n": i, "pad": "x" * 300}, timeout=10)
            assert response.json() == {"got": {"n": i, "pad": "x" * 300}}
        seen = http.get(f"{proc.base_url}/spans", timeout=10).json()
    finally:
        proc.stop()
    records = list(iter_records(db)) if db.exists() else []
    return ParityRun([tuple(s) for s in seen["spans"]], seen["span_ids"], records)  # type: ignore[misc]


@pytest.mark.parametrize("server", sorted(PARITY_SERVERS))
def test_user_exporter_sees_the_same_spans_with_spanlytics(server: str, tmp_path: Path) -> None:
    without = run_parity_app(server, tmp_path, "without", PARITY_USER_EXPORTER="memory")
    with_spanlytics = run_parity_app(
        server, tmp_path, "with", PARITY_USER_EXPORTER="memory", PARITY_SPANLYTICS="true"
    )
    assert sorted(with_spanlytics.spans) == sorted(without.spans)
    assert with_spanlytics.span_ids == without.span_ids
    assert [kind for _, kind in without.spans].count("SERVER") == PARITY_REQUESTS
    if server.startswith("fastapi"):  # the ASGI middleware's internal spans are part of the default
        assert any(name.endswith("http send") for name, _ in without.spans), without.spans
        assert any(name.endswith("http receive") for name, _ in without.spans), without.spans
    assert len(with_spanlytics.records) == PARITY_REQUESTS
    assert all('"pad"' in (r.request_body or "") for r in with_spanlytics.records)


@pytest.mark.parametrize("server", sorted(PARITY_SERVERS))
def test_otlp_receiver_gets_the_same_spans_with_spanlytics(server: str, tmp_path: Path) -> None:
    received = {}
    for mode in ("without", "with"):
        with otlp_receiver() as (receiver, endpoint):
            env = {"PARITY_USER_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint}
            if mode == "with":
                env["PARITY_SPANLYTICS"] = "true"
            run = run_parity_app(server, tmp_path, mode, **env)
            received[mode] = sorted((s["name"], s["kind"], bool(s["parent_span_id"])) for s in receiver.spans)
        assert len(run.records) == (PARITY_REQUESTS if mode == "with" else 0)
    assert received["with"] == received["without"]
    assert len(received["without"]) == run.span_ids  # every span started reached the receiver


LEAN_CASES = {
    # spanlytics is the provider's only processor: nobody else would see the internal spans
    "alone": ({"PARITY_USER_EXPORTER": "none"}, True),
    "alone-kept-by-keyword": ({"PARITY_USER_EXPORTER": "none", "PARITY_INTERNAL_SPANS": "true"}, False),
    "shared-lean-by-keyword": ({"PARITY_USER_EXPORTER": "memory", "PARITY_INTERNAL_SPANS": "false"}, True),
    "shared-lean-by-env": (
        {"PARITY_USER_EXPORTER": "memory", "SPANLYTICS_ASGI_INTERNAL_SPANS": "false"},
        True,
    ),
    "shared-default": ({"PARITY_USER_EXPORTER": "memory"}, False),
    # the choice is made at the first request: an exporter added at lifespan start counts
    "shared-added-at-lifespan-start": (
        {"PARITY_USER_EXPORTER": "memory", "PARITY_MEMORY_ADDED_LATE": "true"},
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(LEAN_CASES))
def test_internal_spans_are_left_out_only_alone_or_when_asked(case: str, tmp_path: Path) -> None:
    env, lean = LEAN_CASES[case]
    run = run_parity_app("fastapi-uvicorn", tmp_path, case, PARITY_SPANLYTICS="true", **env)
    if lean:
        assert run.span_ids == PARITY_REQUESTS  # the server span alone
    else:
        assert run.span_ids >= 3 * PARITY_REQUESTS  # server, receive, send (start and body)
    if env["PARITY_USER_EXPORTER"] == "memory":
        assert len(run.spans) == run.span_ids
    assert len(run.records) == PARITY_REQUESTS
    assert all('"pad"' in (r.request_body or "") for r in run.records)  # capture needs no internal span
    assert all('"got"' in (r.response_body or "") for r in run.records)
