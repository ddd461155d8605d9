"""A store filled by a real app under traffic, and the dashboard served over it: what the
dashboard tests (and their browser) look at.

The traffic carries attacker text in each place the store keeps a client's input (a path, a
header value, a body, a consumer id and name, an exception message): each would set
``window.__pwned`` if the dashboard ever ran it. It also carries secrets (a password in a
body, a bearer token in a header, the token the app answers) that masking must keep out of
the store, and so out of every page."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from spanlytics.destinations.local import iter_records
from tests.support.servers import ServerProcess, free_port, raw_http, start_server, uvicorn_argv

PASSWORD = "hunter2-dashboard-pw-93b1"
BEARER = "eyJ-dashboard-bearer-5c2e"
ANSWERED_TOKEN = "tok-dashboard-secret-4711"  # what the app's /login answers
SECRETS = (PASSWORD, BEARER, ANSWERED_TOKEN)

PATH_INJECTION = "/items/<svg/onload=window.__pwned=1>"
HEADER_INJECTION = "<img src=x onerror=window.__pwned=2>"
BODY_INJECTION = "<script>window.__pwned=3</script>"
CONSUMER_INJECTION = "<img src=x onerror=window.__pwned=4>"
NAME_INJECTION = "<script>window.__pwned=5</script>"
MESSAGE_INJECTION = "<img src=x onerror=window.__pwned=6> exploded"
CONSUMERS = ("acme", "globex", CONSUMER_INJECTION)


@dataclass
class FilledStore:
    db: Path
    sent: int  # requests of the traffic
    stored: int  # records in the store (the traffic, and the start-up's health checks)


def fill_store(folder: Path) -> FilledStore:
    """Run the app under uvicorn writing to a local store in ``folder``, send it traffic, and
    stop it (which flushes the store)."""
    db = folder / "spanlytics.db"
    env = {
        "SPANLYTICS_DESTINATIONS": "local",
        "SPANLYTICS_LOCAL_PATH": str(db),
        "SPANLYTICS_SPOOL_DIR": str(folder / "spool"),
        "SPANLYTICS_FLUSH_INTERVAL": "0.1",
    }
    port = free_port()
    server = start_server(
        uvicorn_argv("tests.support.dashboard_app:app", port), port=port, env=env, log_dir=folder
    )
    sent = 0
    try:
        base = server.base_url
        for i in range(150):
            consumer = CONSUMERS[i % 3]
            headers = {
                "x-consumer": consumer,
                "x-consumer-name": NAME_INJECTION if i % 3 == 2 else consumer.title(),
            }
            if i % 10 == 3:
                response = requests.post(
                    f"{base}/login",
                    json={"username": BODY_INJECTION, "password": PASSWORD},
                    headers={**headers, "Authorization": f"Bearer {BEARER}"},
                    timeout=10,
                )
            elif i % 10 == 7:
                response = requests.get(
                    f"{base}/boom", headers={**headers, "x-message": MESSAGE_INJECTION}, timeout=10
                )
            elif i % 10 == 9:
                response = requests.get(f"{base}/nowhere/{i}", headers=headers, timeout=10)
            else:
                response = requests.get(
                    f"{base}/items/{i}", headers={**headers, "x-note": HEADER_INJECTION}, timeout=10
                )
            assert response.status_code in (200, 404, 500)
            sent += 1
        # the raw path, unencoded: what an attacker's client can send
        head = f"GET {PATH_INJECTION} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-consumer: acme\r\n"
        answer = raw_http(port, f"{head}Connection: close\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 404"), answer[:200]  # no route: stored as unmatched
        sent += 1
    finally:
        assert server.stop() in (0, -15), server.log()
    stored = sum(1 for _ in iter_records(db))
    assert stored >= sent
    return FilledStore(db, sent, stored)


def start_dashboard(db: str, log_dir: Path, *extra: str, env: dict[str, str] | None = None) -> ServerProcess:
    """``spanlytics dashboard`` over ``db`` on a free port (the command people run)."""
    port = free_port()
    argv = [sys.executable, "-m", "spanlytics.cli", "dashboard", "--db", db, "--port", str(port), *extra]
    return start_server(argv, port=port, env=env, log_dir=log_dir, ready_path="/static/dashboard.css")


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> FilledStore:
    """The store a real app filled (once for the HTTP and the browser tests: they only read)."""
    return fill_store(tmp_path_factory.mktemp("dashboard-store"))


@pytest.fixture(scope="session")
def dashboard(store: FilledStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """``spanlytics dashboard`` over :func:`store`, without a token."""
    server = start_dashboard(str(store.db), tmp_path_factory.mktemp("dashboard-logs"))
    try:
        yield server
    finally:
        server.stop()


__all__ = ["SECRETS", "FilledStore", "dashboard", "fill_store", "start_dashboard", "store"]
