"""Instructions per request, counted by valgrind: a figure this noisy machine repeats.

Wall-clock and CPU-time figures move by 10-30% between runs here; the number of instructions
a request costs does not (callgrind counts them, whatever else the machine is doing). This
drives a benchmark app (``apps/``, the harness's, with its ``BENCH_VARIANT`` set-ups)
in-process, without a server or a socket, and counts:

* ``total``: everything the process does per request, our background thread included (the
  pipeline is flushed before the count ends);
* ``request path``: the same with spanlytics' worker stopped and the process left without its
  exit hooks, so only what runs on the app's own thread (and OpenTelemetry's) is counted.

Each figure is the difference between two runs (``--requests 100,400``: 300 requests), so
imports and start-up cancel out. ``added`` is a variant's figure minus that of the OTel-alone
variant of the same set-up (``otel``: spanlytics keeps the ASGI receive/send spans when the
app's TracerProvider has another span processor, as here). About a minute per figure::

    .venv/bin/python benchmarks/bench_instructions.py
    .venv/bin/python benchmarks/bench_instructions.py --framework flask --variants otel,spanlytics-local

Needs valgrind (``apt-get install valgrind``). The request: a POST of about 1 KB of JSON
with a password, an Authorization header and a consumer id, as in the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps(
    {"name": "Anvil", "password": "s3cr3t-pw", "description": "Drop-forged, 50 kg " * 40, "tags": ["a", "b"]}
).encode()
HEADERS = [
    (b"host", b"127.0.0.1"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
    (b"authorization", b"Bearer abc.def.ghi"),
    (b"x-consumer-id", b"acme"),
    (b"user-agent", b"wrk"),
]
WARMUP = 50


def _asgi_requests(app: Any, count: int) -> None:
    async def one() -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": BODY, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        statuses: list[int] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/items",
            "raw_path": b"/items",
            "query_string": b"",
            "root_path": "",
            "headers": HEADERS,
            "client": ("127.0.0.1", 5555),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)
        assert statuses == [200], statuses

    async def all_of_them() -> None:
        for _ in range(count):
            await one()

    asyncio.run(all_of_them())


def _wsgi_requests(app: Any, count: int) -> None:
    import io

    for _ in range(count):
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/items",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(BODY),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(BODY)),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_AUTHORIZATION": "Bearer abc.def.ghi",
            "HTTP_X_CONSUMER_ID": "acme",
            "HTTP_USER_AGENT": "wrk",
        }
        statuses: list[str] = []
        body = app(environ, lambda status, headers, exc_info=None, seen=statuses: seen.append(status))
        for _ in body:
            pass
        getattr(body, "close", lambda: None)()
        assert statuses and statuses[0].startswith("200"), statuses


def drive(variant: str, framework: str, count: int, mode: str) -> None:
    """Run inside valgrind: ``WARMUP`` requests, then ``count`` more (see the module)."""
    os.environ["BENCH_VARIANT"] = variant
    work = tempfile.mkdtemp()
    os.environ["BENCH_DB"] = f"{work}/bench.db"
    os.environ["BENCH_SPOOL_DIR"] = work
    sys.path.insert(0, str(ROOT))
    app = importlib.import_module(f"benchmarks.apps.{framework}_app").app
    run = _wsgi_requests if framework == "flask" else _asgi_requests
    from opentelemetry import trace

    run(app, WARMUP)
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    if mode == "request-path" and variant.startswith("spanlytics"):
        from spanlytics.pipeline import PIPELINES

        for pipeline in PIPELINES:  # nothing drains the queue from now on
            pipeline._worker.stop(5.0)
            pipeline._worker.wake = lambda: None  # type: ignore[method-assign]
    run(app, count)
    if mode == "request-path":
        os._exit(0)  # no exit hooks: they would flush what the worker left queued
    trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]


def count_instructions(variant: str, framework: str, count: int, mode: str) -> int:
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--drive",
        variant,
        framework,
        str(count),
        mode,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"valgrind failed for {variant} ({mode}): {done.stderr[-2000:]}")
    return int(found.group(1))


def per_request(variant: str, framework: str, counts: tuple[int, int], mode: str) -> float:
    low, high = (count_instructions(variant, framework, n, mode) for n in counts)
    return (high - low) / (counts[1] - counts[0])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", default="starlette", choices=("starlette", "fastapi", "flask"))
    parser.add_argument("--variants", default="otel,spanlytics-metrics,spanlytics-local")
    parser.add_argument("--requests", default="100,400", help="the two run sizes (requests)")
    args = parser.parse_args()
    low, high = (int(n) for n in args.requests.split(","))
    variants = args.variants.split(",")
    if "otel" not in variants:
        variants.insert(0, "otel")
    print(f"{args.framework}: instructions per request (callgrind), {high - low} requests\n")
    print("| variant | total | added | request path | added on the request path |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base: dict[str, float] = {}
    for variant in variants:
        figures = {
            mode: per_request(variant, args.framework, (low, high), mode)
            for mode in ("total", "request-path")
        }
        if variant == "otel":
            base = figures
        total, path = figures["total"], figures["request-path"]
        print(
            f"| {variant} | {total:,.0f} | {total - base['total']:+,.0f} | {path:,.0f} "
            f"| {path - base['request-path']:+,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
