"""``spanlytics demo``: the items service under uvicorn, traffic, a clean stop, the report."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from spanlytics.report import build_report, format_report

SERVICE_APP = "spanlytics.demo.service.main:app"
#: What the service needs beyond spanlytics itself (the ``demo`` extra).
REQUIRED_MODULES = ("fastapi", "uvicorn", "opentelemetry.instrumentation.fastapi")


def missing_modules() -> list[str]:
    """The modules the demo needs that are not installed."""
    missing = []
    for name in REQUIRED_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # its parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo service exited with code {proc.returncode}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)  # polling a starting server, with a deadline
    raise RuntimeError(f"the demo service did not answer {url} within {timeout_s:.0f}s")


def run_demo(db: Path, rounds: int) -> None:
    """(Re)create the store ``db``, run the service with ``rounds`` rounds of traffic, print the report.

    Raises :class:`RuntimeError` when the service does not start.
    """
    from spanlytics.demo.traffic import drive_traffic

    db = db.resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    port = _free_port()
    env = dict(os.environ, SPANLYTICS_LOCAL_PATH=str(db), SPANLYTICS_DESTINATIONS="local")
    argv = [sys.executable, "-m", "uvicorn", SERVICE_APP, "--host", "127.0.0.1", "--port", str(port)]
    print(f"Starting the FastAPI demo service on http://127.0.0.1:{port} (store: {db})", flush=True)
    proc = subprocess.Popen([*argv, "--no-access-log"], env=env)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}/healthz")
        sent = drive_traffic(f"http://127.0.0.1:{port}", rounds)
        print(f"Sent {sent} requests from 4 consumers; stopping the app (SIGTERM flushes spanlytics)")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    print()
    print(format_report(build_report(str(db))))
    print(f"\nRequest log stored in {db}. Again: spanlytics report --db {db} [--json]")
    print(f"\nLook at it in a browser: run   spanlytics dashboard --db {db}")
    print("                         and open  http://127.0.0.1:8050/")
