"""Acceptance over real sockets: FastAPI under uvicorn and Flask under gunicorn, SIGTERM,
then the local store and ``spanlytics report --json``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from spanlytics.destinations.local import iter_records
from spanlytics.record import RequestRecord
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
