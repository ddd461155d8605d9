"""The ``spanlytics`` command: ``report`` reads the local store, ``demo`` shows it end to end."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from spanlytics.destinations.local import SchemaError
from spanlytics.report import build_report, format_report, parse_duration

DEFAULT_DB = "./spanlytics.db"
DEMO_APP = "examples.fastapi_service.main:app"


def _report(args: argparse.Namespace) -> int:
    try:
        since = parse_duration(args.since) if args.since else None
    except ValueError as exc:
        print(f"spanlytics: invalid --since: {exc}", file=sys.stderr)
        return 2
    try:
        report = build_report(args.db, since_s=since)
    except (FileNotFoundError, SchemaError) as exc:
        print(f"spanlytics: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def _find_examples() -> Path | None:
    """The checkout holding ``examples/fastapi_service`` (from the cwd or this package)."""
    starts = [Path.cwd(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / "examples" / "fastapi_service" / "main.py").is_file():
                return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float = 30.0) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the example app exited with code {proc.returncode}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the example app did not answer {url} within {timeout_s:.0f}s")


def _drive_traffic(base: str, rounds: int) -> int:
    """A realistic mix from four consumers: reads, writes, 401/404/422/500 and a slow call."""
    import requests

    sys.path.insert(0, str(_find_examples() or "."))
    from examples.demo_data import API_KEYS

    keys = list(API_KEYS)
    sent = 0
    with requests.Session() as http:

        def call(method: str, path: str, key: str | None = None, **kwargs: object) -> None:
            nonlocal sent
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            try:
                http.request(method, base + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]
            except requests.ConnectionError:
                # uvicorn closes a kept-alive connection after an unhandled error; reconnect once.
                http.close()
                http.request(method, base + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]
            sent += 1

        for round_no in range(rounds):
            for weight, key in zip((4, 2, 1, 1), keys, strict=False):
                for _ in range(weight):
                    call("GET", "/items", key)
                    call("GET", f"/items/{1 + round_no % 3}", key)
                call(
                    "POST", "/items", key, json={"name": f"Widget {round_no}", "price": 9.5, "tags": ["demo"]}
                )
                call("POST", "/items", key, json={"name": "", "price": -1})  # 422
                call("GET", "/items/999999", key)  # 404
            call("GET", "/reports/slow", keys[round_no % len(keys)], params={"delay_ms": 250})
            call("GET", "/debug/boom", keys[0])  # 500
            call("GET", "/items")  # 401, no consumer
            call("POST", "/auth/login", json={"username": "alice", "password": "wonderland-42"})
    return sent


def _demo(args: argparse.Namespace) -> int:
    root = _find_examples()
    if root is None:
        print("spanlytics demo: run it from a spanlytics checkout (examples/ not found)", file=sys.stderr)
        return 1
    db = Path(args.db).resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    port = _free_port()
    env = dict(os.environ, SPANLYTICS_LOCAL_PATH=str(db), SPANLYTICS_DESTINATIONS="local")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "uvicorn", DEMO_APP, "--host", "127.0.0.1", "--port", str(port)]
    print(f"Starting the FastAPI example on http://127.0.0.1:{port} (store: {db})")
    proc = subprocess.Popen([*argv, "--no-access-log"], cwd=root, env=env)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}/healthz")
        sent = _drive_traffic(f"http://127.0.0.1:{port}", args.rounds)
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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spanlytics", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="per-endpoint and per-consumer analytics")
    report.add_argument("--db", default=os.environ.get("SPANLYTICS_LOCAL_PATH", DEFAULT_DB))
    report.add_argument("--since", help="only requests newer than this, e.g. 15m, 2h, 7d")
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.set_defaults(run=_report)
    demo = commands.add_parser("demo", help="run the FastAPI example with traffic and report")
    demo.add_argument("--db", default="./spanlytics-demo.db", help="store to (re)create")
    demo.add_argument("--rounds", type=int, default=5, help="rounds of traffic (about 45 requests each)")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
