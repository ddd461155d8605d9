"""Real apps over real sockets writing to one PostgreSQL store: uvicorn --workers 2 and
gunicorn -w 2 at once count every request exactly once; a refused store never fails a request."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.support.postgres import STRANGER, STRANGER_PASSWORD, PgDatabase
from tests.support.servers import free_port, gunicorn_argv, start_server, uvicorn_argv

pytest_plugins = ["tests.support.postgres"]  # the pg_server and pg_db fixtures

APP = "tests.support.configured_apps:"


def _env(url: str, spool: Path) -> dict[str, str]:
    return {
        "SPANLYTICS_DESTINATIONS": "postgres",
        "SPANLYTICS_POSTGRES_URL": url,
        "SPANLYTICS_SPOOL_DIR": str(spool),
        "SPANLYTICS_FLUSH_INTERVAL": "0.1",
    }


def test_uvicorn_and_gunicorn_workers_count_every_request_once(pg_db: PgDatabase, tmp_path: Path) -> None:
    n = 60
    env = _env(pg_db.url, tmp_path / "spool")
    p1, p2 = free_port(), free_port()
    uvicorn = start_server(
        uvicorn_argv(APP + "fastapi_app", p1, "--workers", "2"), port=p1, env=env, log_dir=tmp_path
    )
    try:
        gunicorn = start_server(
            gunicorn_argv(APP + "flask_app", p2, "-w", "2"), port=p2, env=env, log_dir=tmp_path
        )
        try:
            for i in range(n):
                for server in (uvicorn, gunicorn):  # a fresh connection each: both workers serve
                    url = f"{server.base_url}/items/{i % 5}?n={i}"
                    assert requests.get(url, timeout=5, headers={"Connection": "close"}).ok
        finally:
            assert gunicorn.stop() == 0
    finally:
        assert uvicorn.stop() == 0
    assert pg_db.count() == 2 * n
    assert pg_db.sql("SELECT count(DISTINCT id) FROM requests") == [(2 * n,)]
    by_query = pg_db.sql("SELECT query, count(*) FROM requests GROUP BY query")
    assert sorted(by_query) == sorted((f"n={i}", 2) for i in range(n))
    assert pg_db.sql("SELECT route, sum(count)::bigint FROM endpoint_minutes GROUP BY route") == [
        ("/items/{item_id}", 2 * n)
    ]
    logs = uvicorn.log() + gunicorn.log()
    assert "spanlytics postgres" not in logs, logs  # no warning at all


def test_a_refusing_store_never_fails_a_request(pg_db: PgDatabase, tmp_path: Path) -> None:
    url = pg_db.server.url(pg_db.name, user=STRANGER, password=STRANGER_PASSWORD)  # may not create tables
    port = free_port()
    server = start_server(
        uvicorn_argv(APP + "fastapi_app", port),
        port=port,
        env=_env(url, tmp_path / "spool"),
        log_dir=tmp_path,
    )
    try:
        for i in range(20):
            assert requests.get(f"{server.base_url}/items/{i}", timeout=5).status_code == 200
    finally:
        server.stop()
    log = server.log()
    refused = [line for line in log.splitlines() if "refused the writer" in line]
    assert len(refused) == 1 and "permission denied" in refused[0], log
    assert STRANGER_PASSWORD not in log
    assert f"{STRANGER}:***@" in refused[0]
    for file in (tmp_path / "spool").rglob("*"):
        if file.is_file():
            assert STRANGER_PASSWORD.encode() not in file.read_bytes()
    assert list((tmp_path / "spool").rglob("*.batch")), "the records wait in the spool"
