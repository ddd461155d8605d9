"""cli.py: the real `spanlytics` command in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import db_bytes
from tests.support.servers import ROOT

SPANLYTICS = [sys.executable, "-m", "spanlytics.cli"]


def test_demo_runs_the_example_and_reports(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    demo = subprocess.run(
        [*SPANLYTICS, "demo", "--db", str(db), "--rounds", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    assert "Sent " in demo.stdout and "/items/{item_id}" in demo.stdout
    sent = int(demo.stdout.split("Sent ", 1)[1].split()[0])
    report = json.loads(
        subprocess.run(
            [*SPANLYTICS, "report", "--db", str(db), "--json"], capture_output=True, text=True, check=True
        ).stdout
    )
    endpoints = {(e["method"], e["route"]): e for e in report["endpoints"]}
    assert sum(e["count"] for e in report["endpoints"]) == sent
    assert ("GET", "/healthz") not in endpoints  # health checks are excluded by default
    assert endpoints[("GET", "/debug/boom")]["server_error_count"] == 2
    assert endpoints[("POST", "/items")]["error_count"] == 8  # one 422 per consumer per round
    assert endpoints[("GET", "/reports/slow")]["p50_ms"] >= 250
    consumers = {c["consumer_id"]: c for c in report["consumers"]}
    assert {"acme", "globex", "initech", "umbrella"} <= set(consumers)
    assert consumers["acme"]["name"] == "Acme Corp" and consumers["acme"]["group"] == "enterprise"
    stored = db_bytes(db)
    assert b"wonderland-42" not in stored  # the login password was masked
    assert b"sk_demo_" not in stored  # so were the API keys


def test_report_errors_are_clear(tmp_path: Path) -> None:
    missing = subprocess.run(
        [*SPANLYTICS, "report", "--db", str(tmp_path / "none.db")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no spanlytics database" in missing.stderr
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("hello")
    foreign = subprocess.run([*SPANLYTICS, "report", "--db", str(not_sqlite)], capture_output=True, text=True)
    assert foreign.returncode == 1 and "Traceback" not in foreign.stderr
    bad = subprocess.run([*SPANLYTICS, "report", "--since", "soon"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid --since" in bad.stderr
