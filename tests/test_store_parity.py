"""The report is the same whichever store it reads: one app writes the same traffic to the local
store and to PostgreSQL at once (``SPANLYTICS_DESTINATIONS=local,postgres``), over real sockets,
and ``spanlytics report`` gives the same answer for the SQLite path and the PostgreSQL URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from spanlytics.dashboard import views
from spanlytics.dashboard.params import parse_window
from spanlytics.destinations.any_store import open_reader
from spanlytics.report import build_report
from tests.support.postgres import PgDatabase
from tests.support.servers import free_port, start_server, uvicorn_argv

pytest_plugins = ["tests.support.postgres"]  # the pg_server and pg_db fixtures

CONSUMERS = ("acme", "globex", "initech")


def _traffic(base_url: str) -> int:
    """Successes, validation errors, router 404s, crashes and logins, from three consumers."""
    sent = 0
    paths = ["/items/1", "/items/2?n=5", "/items/not-a-number", "/nowhere", "/boom"]
    for i in range(90):
        headers = {"x-consumer": CONSUMERS[i % 3], "Connection": "close"}
        if i % 10 == 9:
            response = requests.post(
                f"{base_url}/login", json={"password": "hunter2"}, headers=headers, timeout=5
            )
        else:
            response = requests.get(base_url + paths[i % len(paths)], headers=headers, timeout=5)
        assert response.status_code in (200, 404, 422, 500)
        sent += 1
    return sent


def test_the_report_on_postgres_equals_the_report_on_sqlite(pg_db: PgDatabase, tmp_path: Path) -> None:
    db = tmp_path / "spanlytics.db"
    env = {
        "SPANLYTICS_DESTINATIONS": "local,postgres",
        "SPANLYTICS_LOCAL_PATH": str(db),
        "SPANLYTICS_POSTGRES_URL": pg_db.url,
        "SPANLYTICS_CONSUMER_HEADER": "x-consumer",
        "SPANLYTICS_SPOOL_DIR": str(tmp_path / "spool"),
        "SPANLYTICS_FLUSH_INTERVAL": "0.1",
    }
    port = free_port()
    server = start_server(
        uvicorn_argv("tests.support.configured_apps:fastapi_app", port), port=port, env=env, log_dir=tmp_path
    )
    try:
        sent = _traffic(server.base_url)
    finally:
        # a graceful stop flushes both destinations (uvicorn then re-raises SIGTERM)
        assert server.stop() in (0, -15), server.log()
    assert pg_db.count() == sent

    now_ns = time.time_ns()
    for since_s in (None, 3600.0, 1.0e-3 + (now_ns - _oldest_ns(db)) / 1e9 / 2):  # all, 1 h, half of it
        local = build_report(db, since_s=since_s, now_ns=now_ns)
        remote = build_report(pg_db.url, since_s=since_s, now_ns=now_ns)
        assert remote == local
    everything = build_report(db)
    assert everything["total"] == sent
    assert {c["consumer_id"] for c in everything["consumers"]} == set(CONSUMERS)
    assert {e["route"] for e in everything["endpoints"]} >= {"/items/{item_id}", "/login", "/boom", None}

    # the command people run, for the path and for the URL (given in the environment)
    cli = [sys.executable, "-m", "spanlytics.cli", "report", "--json"]
    shell = {k: v for k, v in os.environ.items() if not k.startswith("SPANLYTICS_")}
    by_path = subprocess.run([*cli, "--db", str(db)], capture_output=True, text=True, env=shell, check=True)
    by_url = subprocess.run(
        cli, capture_output=True, text=True, env={**shell, "SPANLYTICS_POSTGRES_URL": pg_db.url}, check=True
    )
    assert json.loads(by_url.stdout) == json.loads(by_path.stdout)
    assert json.loads(by_path.stdout)["total"] == sent

    # the dashboard's views (on PostgreSQL the overview's charts come from a forked reader);
    # sums of float durations may differ in their last bits with the order they are added in
    for preset in ("1h", "24h"):
        window = parse_window({"range": preset}, now_ns)
        with open_reader(str(db)) as on_file, open_reader(pg_db.url) as on_server:
            assert views.overview(on_server, window) == views.overview(on_file, window)
            route = ("GET", "/items/{item_id}")
            assert _rounded(views.endpoint_view(on_server, window, *route)) == _rounded(
                views.endpoint_view(on_file, window, *route)
            )
            assert _rounded(views.consumer_view(on_server, window, CONSUMERS[0])) == _rounded(
                views.consumer_view(on_file, window, CONSUMERS[0])
            )
    with open_reader(pg_db.url) as on_server:
        assert views.overview(on_server, parse_window({"range": "1h"}, now_ns))["total"]["count"] == sent


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _oldest_ns(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT min(start_time_ns) FROM requests").fetchone()[0])
