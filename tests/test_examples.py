"""The example apps, unchanged, under their real servers: same traffic, same records."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import requests
from examples.demo_data import API_KEYS

from spanlytics.destinations.local import iter_records
from tests.conftest import db_bytes
from tests.support.servers import free_port, gunicorn_argv, start_server, uvicorn_argv

EXAMPLES = {
    "fastapi": lambda port: uvicorn_argv("examples.fastapi_service.main:app", port),
    "flask": lambda port: gunicorn_argv(
        "examples.flask_app:app", port, "--workers", "2", "--worker-class", "gthread", "--threads", "4"
    ),
    "starlette": lambda port: uvicorn_argv("examples.starlette_app:app", port),
}
KEYS = list(API_KEYS)


def drive(base: str) -> Counter[tuple[str, str, int, str | None]]:
    """The same mix against any example; returns (method, route, status, consumer) counts."""
    sent: Counter[tuple[str, str, int, str | None]] = Counter()
    http = requests.Session()

    def call(method: str, path: str, route: str, key: str | None, **kwargs: object) -> None:
        headers = {"X-API-Key": key} if key else {}
        for attempt in range(2):
            try:
                response = http.request(method, base + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]
                break
            except requests.ConnectionError:  # a kept-alive connection closed after a 500
                http.close()
                if attempt:
                    raise
        consumer = API_KEYS[key]["id"] if key and response.status_code != 401 else None
        sent[(method, route, response.status_code, consumer)] += 1

    for key in KEYS[:3]:
        call("GET", "/items", "/items", key)
        call("GET", "/items/1", "/items/{item_id}", key)
        call("GET", "/items/424242", "/items/{item_id}", key)
        call("POST", "/items", "/items", key, json={"name": "Widget", "price": 3.5})
        call("POST", "/items", "/items", key, json={"name": "", "price": -1})
    call("GET", "/items", "/items", None)
    call("POST", "/auth/login", "/auth/login", None, json={"username": "alice", "password": "wonderland-42"})
    call("GET", "/debug/boom", "/debug/boom", KEYS[0])
    return sent


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_example_records_every_request(example: str, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    port = free_port()
    server = start_server(
        EXAMPLES[example](port), port=port, log_dir=tmp_path, env={"SPANLYTICS_LOCAL_PATH": str(db)}
    )
    try:
        sent = drive(server.base_url)
    finally:
        server.stop()
    records = [r for r in iter_records(db) if r.path != "/healthz"]
    stored = Counter(
        (r.method, r.route or "", r.status or 0, r.consumer.identifier if r.consumer else None)
        for r in records
    )
    assert stored == sent
    assert {s for (_, _, s, _) in sent} >= {200, 201, 401, 404, 422, 500}
    login = next(r for r in records if r.route == "/auth/login")
    assert '"password":"[masked]"' in (login.request_body or "")
    assert "access_token" in (login.response_body or "") and "tok_" not in (login.response_body or "")
    raw = db_bytes(db)
    assert b"wonderland-42" not in raw and b"sk_demo_" not in raw
