"""The load generator of the request-path harness: wrk, its Lua scripts and its output.

wrk (Debian's package) is installed with apt-get when missing and the harness runs as root,
as on a fresh CI machine. Every request names the API consumer in ``X-Consumer-Id`` and sends
an ``Authorization`` header to mask; the POST body is 1 KB of JSON with a ``password`` field.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BODY_BYTES = 1024
HEADERS = {
    "Authorization": "Bearer sk_live_0123456789abcdef",
    "X-Consumer-Id": "bench-consumer",
    "User-Agent": "wrk-bench/1.0",
}
PATHS = {"post": "/items", "get": "/items/1"}


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (ms) and anything that went wrong."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


def ensure_wrk() -> str:
    """The path of wrk, installing Debian's package when missing (root only)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk with apt-get", file=sys.stderr, flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        quiet = subprocess.DEVNULL
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=quiet, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=quiet, env=env)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is required: apt-get install wrk (the harness does it when running as root)")
    return found


def wrk_version(wrk: str) -> str:
    """``wrk -v`` prints its version and exits 1."""
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"wrk (\S+)", out)
    return match.group(1) if match else "unknown"


def post_body() -> str:
    """1,024 bytes of JSON, with a secret in a ``password`` field for the tools to mask."""
    doc: dict[str, object] = {
        "name": "Widget",
        "price": 9.5,
        "password": "hunter2-correct-horse",
        "tags": ["a", "b", "c"],
        "customer": {"id": 42, "email": "buyer@example.com"},
        "note": "",
    }
    doc["note"] = "x" * (BODY_BYTES - len(json.dumps(doc)))
    body = json.dumps(doc)
    assert len(body) == BODY_BYTES and "]]" not in body  # "]]" would end the Lua string
    return body


def lua_script(endpoint: str) -> str:
    """The wrk script of ``endpoint`` (``post`` or ``get``): method, headers and body."""
    lines = [f'wrk.method = "{endpoint.upper()}"']
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in HEADERS.items()]
    if endpoint == "post":
        lines.append('wrk.headers["Content-Type"] = "application/json"')
        lines.append(f"wrk.body = [[{post_body()}]]")
    return "\n".join(lines) + "\n"


def write_script(directory: Path, endpoint: str) -> Path:
    path = directory / f"{endpoint}.lua"
    path.write_text(lua_script(endpoint))
    return path


def run_wrk(wrk: str, url: str, script: Path, seconds: float, threads: int, connections: int) -> WrkResult:
    """One bounded wrk run; a run that exceeds its duration by a minute is killed."""
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return parse_wrk(done.stdout)


def parse_wrk(out: str) -> WrkResult:
    """Read the numbers off wrk's text report (it has no machine-readable one without Lua)."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rps is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=latency_ms(out, "50"),
        p99_ms=latency_ms(out, "99"),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
    )


def latency_ms(out: str, percentile: str) -> float:
    """A line of the latency distribution (``99%   41.08ms``) in milliseconds."""
    match = re.search(rf"^\s*{percentile}%\s+([\d.]+)(us|ms|s|m)\b", out, re.MULTILINE)
    if not match:
        return float("nan")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[match.group(2)]
    return float(match.group(1)) * scale
