"""Request-path overhead: requests/s of a FastAPI app under uvicorn, OTel alone vs spanlytics.

Each variant runs as a real server process (one uvicorn worker) driven by wrk on loopback;
variants alternate A B A B over rounds so drift hits both; the table shows medians,
min-max, p50/p99 latency and the ratio against OTel alone. wrk comes from Debian (the
script installs it with apt-get when missing and running as root).

    .venv/bin/python benchmarks/bench_request_path.py [--rounds 3] [--duration 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("bare", "otel", "spanlytics")
LUA_POST = """
wrk.method = "POST"
wrk.body = '{"name": "Widget", "price": 9.5, "password": "hunter2", "tags": ["a", "b"], "note": "%s"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk_live_0123456789"
""" % ("x" * 900)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is required: apt-get install wrk")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(variant: str, db: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, BENCH_VARIANT=variant, SPANLYTICS_LOCAL_PATH=str(db), PYTHONPATH=str(ROOT))
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "benchmarks.app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return proc, port
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{variant} did not start")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def parse_latency(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\b", text, re.MULTILINE)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def run_wrk(wrk: str, url: str, seconds: int, connections: int, script: Path | None) -> dict[str, float]:
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        argv[1:1] = ["-s", str(script)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50": parse_latency(out, "50"),
        "p99": parse_latency(out, "99"),
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--endpoint", choices=("get", "post"), default="post")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    wrk = ensure_wrk()
    variants = [v for v in args.variants.split(",") if v]
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        script = None
        if args.endpoint == "post":
            script = Path(tmp) / "post.lua"
            script.write_text(LUA_POST)
        path = "/items" if args.endpoint == "post" else "/items/1"
        for round_no in range(args.rounds):
            order = variants if round_no % 2 == 0 else list(reversed(variants))
            for variant in order:
                proc, port = start(variant, Path(tmp) / f"{variant}-{round_no}.db")
                try:
                    url = f"http://127.0.0.1:{port}{path}"
                    run_wrk(wrk, url, 2, args.connections, script)  # warm-up
                    result = run_wrk(wrk, url, args.duration, args.connections, script)
                    result["rss_mb"] = rss_kb(proc.pid) / 1024
                    results[variant].append(result)
                    print(
                        f"round {round_no + 1} {variant:<11} {result['rps']:8.0f} req/s "
                        f"p99 {result['p99']:6.2f} ms rss {result['rss_mb']:.1f} MB",
                        flush=True,
                    )
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
    base = statistics.median(r["rps"] for r in results["otel"]) if "otel" in results else None
    bare = statistics.median(r["rps"] for r in results["bare"]) if "bare" in results else None
    print(
        f"\nFastAPI {args.endpoint.upper()} {path}, uvicorn 1 worker, wrk -t1 -c{args.connections} "
        f"-d{args.duration}s, {args.rounds} rounds, medians"
    )
    print(
        f"{'variant':<12}{'req/s':>9}{'min-max':>15}{'vs bare':>9}{'vs otel':>9}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'RSS MB':>9}"
    )
    for variant, runs in results.items():
        rps = [r["rps"] for r in runs]
        med = statistics.median(rps)
        vs_bare = med / bare if bare else float("nan")
        vs_otel = med / base if base else float("nan")
        p50 = statistics.median(r["p50"] for r in runs)
        p99 = statistics.median(r["p99"] for r in runs)
        rss = statistics.median(r["rss_mb"] for r in runs)
        spread = f"{min(rps):.0f}-{max(rps):.0f}"
        print(
            f"{variant:<12}{med:>9.0f}{spread:>15}{vs_bare:>9.2f}{vs_otel:>9.2f}{p50:>9.2f}{p99:>9.2f}{rss:>9.1f}"
        )


if __name__ == "__main__":
    main()
