"""The stores at volume: write rate and report time, local SQLite and PostgreSQL alike.

Writes ``--records`` masked-looking records (1 KB JSON bodies both ways, realistic headers)
spread over ``--hours`` of traffic, ``--endpoints`` endpoints and ``--consumers`` consumers,
through the destination's own ``export`` (the path the background worker takes, rollups
included), then times ``build_report`` for all time and for the last hour, median of
``--repeat`` runs::

    .venv/bin/python benchmarks/bench_stores.py --store local --records 1000000
    .venv/bin/python benchmarks/bench_stores.py --store postgres --url postgresql://... --records 1000000

The write rate is records over the wall time of ``export`` + ``force_flush`` in one process,
with the process's CPU time beside it (the database server's is not in it). PostgreSQL's
sender joins the batches that wait behind the database, so its queue never spills to the
spool; ``dropped`` says so (it must be 0 for a valid run; ``--flush-every N`` waits for the
store every N batches instead). The figures are in benchmarks/README.md ("The stores at volume").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator

from spanlytics.config import Settings
from spanlytics.consumer import Consumer
from spanlytics.destinations.registry import build_destinations
from spanlytics.record import RequestRecord
from spanlytics.report import build_report

_BODY = json.dumps({"items": [{"id": i, "name": f"item {i}", "price": i * 1.5} for i in range(24)]})[:1000]
_HEADERS = (
    ("host", "api.example.com"),
    ("content-type", "application/json"),
    ("authorization", "[REDACTED]"),
    ("user-agent", "client/1.0"),
    ("accept", "application/json"),
)


def records(n: int, hours: float, endpoints: int, consumers: int, seed: int = 7) -> Iterator[RequestRecord]:
    """``n`` records evenly over the last ``hours``, oldest first."""
    rng = random.Random(seed)
    now = time.time_ns()
    span_ns = int(hours * 3600e9)
    start = now - span_ns
    routes = [f"/v1/resource{i}/{{item_id}}" for i in range(endpoints)]
    methods = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
    people = [Consumer(f"consumer-{i}", f"Consumer {i}", f"group-{i % 5}") for i in range(consumers)]
    pid = os.getpid()
    for i in range(n):
        route = routes[int(rng.paretovariate(1.2)) % endpoints]
        status = rng.choices((200, 201, 400, 404, 500), (80, 8, 6, 4, 2))[0]
        yield RequestRecord(
            record_id=f"bench-{pid}-{seed}-{i:09d}",
            trace_id=f"{rng.getrandbits(128):032x}",
            span_id=f"{rng.getrandbits(64):016x}",
            start_time_ns=start + span_ns * i // n,
            duration_ms=rng.lognormvariate(3.0, 0.8),
            method=methods[i % len(methods)],
            route=route,
            path=route.replace("{item_id}", str(i % 1000)),
            url=f"https://api.example.com{route}",
            query="",
            status=status,
            request_headers=_HEADERS,
            response_headers=(("content-type", "application/json"),),
            request_content_type="application/json",
            response_content_type="application/json",
            request_body=_BODY,
            response_body=_BODY,
            request_size=len(_BODY),
            response_size=len(_BODY),
            consumer=people[int(rng.paretovariate(1.1)) % consumers],
        )


def write(settings: Settings, args: argparse.Namespace) -> dict[str, float]:
    (destination,) = build_destinations(settings)
    pending: list[RequestRecord] = []
    wall = cpu = 0.0
    batches = 0
    for record in records(args.records, args.hours, args.endpoints, args.consumers):
        pending.append(record)
        if len(pending) == args.batch:
            wall, cpu = _timed(destination, pending, wall, cpu)
            pending = []
            batches += 1
            if args.flush_every and batches % args.flush_every == 0:
                wall, cpu = _flushed(destination, wall, cpu)
    if pending:
        wall, cpu = _timed(destination, pending, wall, cpu)
    wall, cpu = _flushed(destination, wall, cpu)
    destination.shutdown(60.0)
    result = {"records": args.records, "wall_s": wall, "cpu_s": cpu, "records_per_s": args.records / wall}
    result["dropped"] = getattr(destination, "dropped", 0)
    stats = getattr(getattr(destination, "sender", None), "stats", None)
    if callable(stats):
        result["dropped"] = sum(stats()["dropped"].values())
        result["batches_sent"] = stats()["batches_sent"]
        result["batches_spooled"] = stats()["batches_spooled"]
    return result


def _timed(destination: object, pending: list[RequestRecord], wall: float, cpu: float) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    destination.export(pending)  # type: ignore[attr-defined]
    return wall + time.perf_counter() - t0, cpu + time.process_time() - c0


def _flushed(destination: object, wall: float, cpu: float) -> tuple[float, float]:
    """Wait until everything exported is written, the batches the sender spooled too (an
    exporter far faster than the database fills the sender's queue; the rest waits on disk)."""
    t0, c0 = time.perf_counter(), time.process_time()
    deadline = time.monotonic() + 600.0
    spool = getattr(getattr(destination, "sender", None), "spool", None)
    while True:
        flushed = destination.force_flush(600.0)  # type: ignore[attr-defined]
        if flushed and (spool is None or not spool.has_leftovers()):
            break
        if time.monotonic() > deadline:
            raise SystemExit("the destination did not deliver within 600 s")
        time.sleep(0.05)  # the sender's worker claims the spooled batches
    return wall + time.perf_counter() - t0, cpu + time.process_time() - c0


def report_times(db: str, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, since in (("all_time_s", None), ("since_1h_s", 3600.0), ("since_24h_s", 86400.0)):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            report = build_report(db, since_s=since)
            times.append(time.perf_counter() - t0)
        out[label] = statistics.median(times)
        out[label.replace("_s", "_total")] = report["total"]
    return out


def store_arguments(description: str | None, *, repeat: int, skip_write: str) -> argparse.ArgumentParser:
    """The options of a benchmark over a store at volume (this one and bench_dashboard.py):
    which store, and the traffic that fills it."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("local", "postgres"), default="local")
    parser.add_argument("--url", help="the PostgreSQL store (for --store postgres)")
    parser.add_argument("--path", help="the SQLite file (default: a new temporary one)")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--endpoints", type=int, default=20)
    parser.add_argument("--consumers", type=int, default=50)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--flush-every", type=int, default=0, help="wait for the store every N batches")
    parser.add_argument("--skip-write", action="store_true", help=skip_write)
    return parser


def store_settings(
    parser: argparse.ArgumentParser, args: argparse.Namespace, prefix: str
) -> tuple[str, Settings]:
    """The store the options name (a new temporary SQLite file by default) and the settings
    that write it; PostgreSQL batches spool to a new temporary folder, never an earlier run's."""
    if args.store == "postgres":
        if not args.url:
            parser.error("--store postgres needs --url")
        spool = tempfile.mkdtemp(prefix=f"{prefix}-spool-")
        return args.url, Settings.resolve(
            destinations=("postgres",), postgres_url=args.url, retention_s="off", spool_dir=spool
        )
    db = args.path or os.path.join(tempfile.mkdtemp(prefix=f"{prefix}-"), "spanlytics.db")
    return db, Settings.resolve(
        destinations=("local",), local_path=db, retention_s="off", local_max_mb=10_000_000
    )


def main() -> None:
    parser = store_arguments(__doc__, repeat=3, skip_write="only time the report of an existing store")
    args = parser.parse_args()
    db, settings = store_settings(parser, args, "bench-stores")
    result: dict[str, object] = {"store": args.store}
    if not args.skip_write:
        result["write"] = write(settings, args)
    result["report"] = report_times(db, args.repeat)
    if args.store == "local":
        result["file_mb"] = round(os.path.getsize(db) / 1e6, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
