"""A client sees byte-identical responses with and without spanlytics, over real sockets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spanlytics.destinations.local import iter_records
from tests.support.edge_apps import LARGE, NON_UTF8
from tests.support.servers import free_port, gunicorn_argv, raw_http, start_server, uvicorn_argv

SERVERS = {
    "fastapi-uvicorn": lambda port: uvicorn_argv("tests.support.edge_apps:fastapi_app", port),
    "flask-gunicorn": lambda port: gunicorn_argv(
        "tests.support.edge_apps:flask_app", port, "--worker-class", "gthread", "--threads", "4"
    ),
}


def _req(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body and "Transfer-Encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


UPLOAD = LARGE[: 3 * 1024 * 1024] + NON_UTF8
REQUESTS = {
    "stream": _req("GET", "/stream?n=200"),
    "large": _req("GET", "/large"),
    "empty": _req("GET", "/empty"),
    "head": _req("HEAD", "/text"),
    "non-utf8": _req("GET", "/non-utf8"),
    "chunked-upload": _req(
        "POST", "/echo", {"Transfer-Encoding": "chunked", "Content-Type": "text/plain"}, _chunked(UPLOAD)
    ),
    "large-upload": _req("POST", "/echo", {"Content-Type": "application/octet-stream"}, LARGE),
    "empty-upload": _req("POST", "/echo", {"Content-Type": "text/plain", "Content-Length": "0"}),
    "malformed-json": _req("POST", "/echo", {"Content-Type": "application/json"}, b'{"a": [1, 2'),
    "raising-callback": _req("GET", "/text", {"X-Callback-Consumer": "raise"}),
    "unread-body": _req("POST", "/ignore-body", {"Content-Type": "text/plain"}, b"x" * 2000),
    "exception": _req("GET", "/boom"),
}
_DATE = re.compile(rb"\r\ndate: [^\r]*", re.IGNORECASE)


def _normalise(response: bytes) -> bytes:
    head, sep, body = response.partition(b"\r\n\r\n")
    return _DATE.sub(b"", head) + sep + body


def _responses(server: str, variant: str, tmp_path: Path) -> tuple[dict[str, bytes], Path]:
    db = tmp_path / f"{variant}.db"
    port = free_port()
    proc = start_server(
        SERVERS[server](port),
        port=port,
        log_dir=tmp_path,
        env={"SPANLYTICS_TEST_VARIANT": variant, "SPANLYTICS_LOCAL_PATH": str(db)},
    )
    try:
        return {name: _normalise(raw_http(port, request)) for name, request in REQUESTS.items()}, db
    finally:
        proc.stop()


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_responses_are_byte_identical(server: str, tmp_path: Path) -> None:
    plain, _ = _responses(server, "otel", tmp_path)
    captured, db = _responses(server, "spanlytics", tmp_path)
    for name in REQUESTS:
        assert captured[name] == plain[name], f"{name} differs with spanlytics"
    assert LARGE in plain["large"]
    assert plain["large-upload"].endswith(LARGE)
    assert plain["chunked-upload"].endswith(UPLOAD)
    assert b"chunk 199" in plain["stream"]

    records = [r for r in iter_records(db) if r.path != "/healthz"]
    assert len(records) == len(REQUESTS)
    by_path = {}
    for record in records:
        by_path.setdefault((record.method, record.path), []).append(record)
    large = by_path[("GET", "/large")][0]
    assert large.response_size == len(LARGE)
    assert large.response_body is not None and "omitted" in large.response_body
    uploads = {r.request_size: r for r in by_path[("POST", "/echo")]}
    assert set(uploads) == {len(UPLOAD), len(LARGE), 0, len(b'{"a": [1, 2')}
    chunked = uploads[len(UPLOAD)]
    assert chunked.request_body_truncated and chunked.response_body_truncated
    assert chunked.request_body is not None and len(chunked.request_body.encode()) >= 64 * 1024 - 4
    assert by_path[("GET", "/non-utf8")][0].response_body == NON_UTF8.decode("utf-8", "replace")
    head = by_path[("HEAD", "/text")][0]
    assert head.response_size == 0
    unread = by_path[("POST", "/ignore-body")][0]
    assert unread.request_size == 2000
    assert by_path[("GET", "/text")][0].consumer is None
    assert by_path[("GET", "/boom")][0].status == 500
