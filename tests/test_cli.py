"""cli.py: the real `spanlytics` command in subprocesses."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import spanlytics
from spanlytics.destinations.local import LocalStore
from spanlytics.record import RequestRecord
from tests.conftest import db_bytes
from tests.support.servers import ROOT, free_port, start_server

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
    # it ends with the dashboard's command and URL: the command, run as printed (on a free
    # port instead of 8050), serves the demo's traffic at that URL's path
    command, url = demo.stdout.strip().splitlines()[-2:]
    argv = command.split("run", 1)[1].split()
    assert argv == ["spanlytics", "dashboard", "--db", str(db)]
    assert url.split()[-1] == "http://127.0.0.1:8050/"
    port = free_port()
    board = start_server(
        [*SPANLYTICS, *argv[1:], "--port", str(port)],
        port=port,
        log_dir=tmp_path,
        ready_path="/static/dashboard.css",
    )
    try:
        page = requests.get(f"http://127.0.0.1:{port}/?range=1h", timeout=30)
    finally:
        board.stop()
    assert page.status_code == 200 and "/items/{item_id}" in page.text and "acme" in page.text


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


def many_endpoints_store(path: Path, endpoints: int) -> Path:
    """A store whose JSON report is far larger than a pipe's buffer."""
    now = time.time_ns()
    records = [
        RequestRecord(
            record_id=f"r-{n}",
            trace_id=f"{n:032x}",
            span_id=f"{n:016x}",
            start_time_ns=now - n,
            duration_ms=1.0,
            method="GET",
            route=f"/endpoint-{n}",
            path=f"/endpoint-{n}",
            url=f"http://api.test/endpoint-{n}",
            query="",
            status=200,
        )
        for n in range(endpoints)
    ]
    store = LocalStore(path)
    store.export(records)
    store.shutdown()
    return path


@pytest.mark.parametrize("fmt", ["--json", None])
def test_report_into_a_closed_pipe_exits_quietly(tmp_path: Path, fmt: str | None) -> None:
    db = many_endpoints_store(tmp_path / "big.db", 3000)
    command = " ".join(shlex.quote(arg) for arg in [*SPANLYTICS, "report", "--db", str(db)])
    piped = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command} {fmt or ''} | head -n 2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert len(piped.stdout.splitlines()) == 2
    assert piped.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored" line
    assert piped.returncode == 1  # what Python itself does on EPIPE


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("", "invalid duration ''"),
        ("99999999999999999999999d", "at most 36500d"),
        ("9" * 400, "at most 36500d"),
        ("0s", "greater than zero"),
    ],
)
def test_report_rejects_empty_and_absurd_since(tmp_path: Path, since: str, message: str) -> None:
    db = many_endpoints_store(tmp_path / "s.db", 3)
    bad = subprocess.run(
        [*SPANLYTICS, "report", "--db", str(db), "--since", since], capture_output=True, text=True
    )
    assert bad.returncode == 2, bad.stdout
    assert "invalid --since" in bad.stderr and message in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stdout == ""


def test_report_since_on_the_command_line(tmp_path: Path) -> None:
    db = many_endpoints_store(tmp_path / "s.db", 3)
    out = subprocess.run(
        [*SPANLYTICS, "report", "--db", str(db), "--since", "36500d", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["total"] == 3


def test_version_and_help(tmp_path: Path) -> None:
    version = subprocess.run([*SPANLYTICS, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"spanlytics {spanlytics.__version__}"
    helptext = subprocess.run(
        [*SPANLYTICS, "report", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    db_help = next(line for line in helptext.splitlines() if line.strip().startswith("--db"))
    assert "SQLite file" in db_help and "SPANLYTICS_LOCAL_PATH" in db_help
    assert "SPANLYTICS_POSTGRES_URL" in db_help


SPANLYTICS_SCRIPT = str(Path(sys.executable).parent / "spanlytics")


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed ``spanlytics`` console script, importing this worktree's package."""
    src = str(ROOT / "src")
    environ = {**os.environ, "PYTHONPATH": src, **(env or {})}
    return subprocess.run([SPANLYTICS_SCRIPT, *args], capture_output=True, text=True, timeout=60, env=environ)


def aged_store(path: Path) -> Path:
    day = 86400 * 10**9
    now = time.time_ns()
    records = [
        RequestRecord(
            record_id=f"r-{n}", trace_id=f"{n:032x}", span_id=f"{n:016x}",
            start_time_ns=now - (10 * day if n < 1234 else 60_000_000_000), duration_ms=1.0,
            method="GET", route="/a", path="/a", url="http://api.test/a", query="", status=200,
        )
        for n in range(1240)
    ]  # fmt: skip
    store = LocalStore(path)
    store.export(records)
    store.shutdown()
    return path


def test_prune_removes_old_records_and_says_so(tmp_path: Path) -> None:
    db = aged_store(tmp_path / "s.db")
    done = run_script("prune", "--db", str(db), "--older-than", "7d")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "removed 1,234 request records older than 7d"
    report = json.loads(run_script("report", "--db", str(db), "--json").stdout)
    assert report["total"] == 1240  # the rollups still count them
    assert json.loads(run_script("report", "--db", str(db), "--since", "1h", "--json").stdout)["total"] == 6
    again = run_script("prune", "--db", str(db), "--older-than", "7d", "--rollups-older-than", "7d", "--json")
    assert json.loads(again.stdout)["records"] == 0 and json.loads(again.stdout)["rollup_rows"] >= 1


def test_prune_errors(tmp_path: Path) -> None:
    bad = run_script("prune", "--db", str(tmp_path / "x.db"), "--older-than", "soon")
    assert bad.returncode == 2 and "invalid duration" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_script("prune", "--db", str(tmp_path / "x.db"), "--older-than", "7d")
    assert missing.returncode == 1 and "no spanlytics database" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.db").exists()


def test_report_db_defaults_to_the_postgres_url_when_set(tmp_path: Path) -> None:
    helptext = run_script("report", "--help", env={"COLUMNS": "300"}).stdout
    assert "SPANLYTICS_POSTGRES_URL" in helptext and "postgresql://" in helptext
    db = aged_store(tmp_path / "s.db")
    local = run_script("report", "--json", env={"SPANLYTICS_LOCAL_PATH": str(db)})
    assert json.loads(local.stdout)["total"] == 1240
