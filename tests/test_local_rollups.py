"""The local store's per-minute rollups: exact against the records, replay-safe, migrated from
version 1, exact under 4 writer processes, and end to end over a real server."""

from __future__ import annotations

import dataclasses
import multiprocessing
import random
import sqlite3
import time
from collections import Counter
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import requests

from spanlytics.consumer import Consumer
from spanlytics.destinations.local import MIGRATIONS, SCHEMA_VERSION, LocalReader, LocalStore, iter_records
from spanlytics.destinations.rollups import MINUTE_NS, key_value, status_class
from spanlytics.record import RequestRecord
from spanlytics.report import build_report
from tests.support.servers import free_port, poll_until, start_server, uvicorn_argv

NOW_NS = time.time_ns()
MINUTE_STATUSES = (200, 201, 204, 301, 404, 422, 500, 503, None)


def record(i: int, rng: random.Random, prefix: str = "r") -> RequestRecord:
    consumer = rng.choice([None, Consumer("acme", name="Acme"), Consumer("zed", group="free")])
    return RequestRecord(
        record_id=f"{prefix}-{i}",
        trace_id=f"{i:032x}",
        span_id=f"{i:016x}",
        start_time_ns=NOW_NS - rng.randrange(0, 90 * MINUTE_NS),
        duration_ms=rng.lognormvariate(2, 1),
        method=rng.choice(["GET", "POST"]),
        route=rng.choice(["/a", "/b/{id}", None]),
        path="/a",
        url="http://api.test/a",
        query="",
        status=rng.choice(MINUTE_STATUSES),
        request_size=rng.choice([None, 10, 200]),
        response_size=rng.choice([None, 5]),
        consumer=consumer,
    )


def rollup_counts(db: Path) -> tuple[Counter[tuple[object, ...]], Counter[tuple[object, ...]]]:
    """Counts per (minute, method, route, class) and (minute, consumer, class) in the tables."""
    with sqlite3.connect(db) as conn:
        endpoints = Counter(
            {
                tuple(r[:4]): r[4]
                for r in conn.execute(
                    "SELECT minute, method, route, status_class, count FROM endpoint_minutes"
                )
            }
        )
        consumers = Counter(
            {
                tuple(r[:3]): r[3]
                for r in conn.execute("SELECT minute, consumer_id, status_class, count FROM consumer_minutes")
            }
        )
        hours = sum(r[0] for r in conn.execute("SELECT count FROM endpoint_hours"))
    assert hours == sum(endpoints.values())  # the hour tier holds the same requests
    return endpoints, consumers  # fmt: skip


def record_counts(db: Path) -> tuple[Counter[tuple[object, ...]], Counter[tuple[object, ...]]]:
    """The same counts, computed from the stored records one by one."""
    endpoints: Counter[tuple[object, ...]] = Counter()
    consumers: Counter[tuple[object, ...]] = Counter()
    for r in iter_records(db):
        minute, klass = r.start_time_ns // MINUTE_NS, status_class(r.status)
        endpoints[(minute, r.method, r.route or "", klass)] += 1
        consumers[(minute, r.consumer.identifier if r.consumer else "", klass)] += 1
    return endpoints, consumers


def test_rollups_equal_the_records_and_a_replay_counts_once(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    rng = random.Random(3)
    batch = [record(i, rng) for i in range(700)]
    store = LocalStore(db)
    store.export(batch[:400])
    store.export(batch)  # 400 replayed, 300 new
    before = rollup_counts(db)
    store.export(batch)  # a batch written twice counts once
    store.shutdown()
    assert store.dropped == 0
    assert rollup_counts(db) == before == record_counts(db)
    assert sum(before[0].values()) == 700
    with LocalReader(db) as reader:
        errors = sum(row[4] for row in reader.endpoint_rollups(None))
        labels = {cid: (name, group) for cid, name, group in reader.consumer_labels()}
    assert errors == sum(1 for r in batch if r.status is not None and r.status >= 400)
    assert labels == {"acme": ("Acme", None), "zed": (None, "free")}


def test_labels_newest_wins_and_null_never_erases(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = LocalStore(db)
    base = record(0, random.Random(1))

    def at(i: int, t: int, consumer: Consumer) -> RequestRecord:
        return dataclasses.replace(base, record_id=f"l-{i}", start_time_ns=NOW_NS - t, consumer=consumer)

    store.export([at(1, 100, Consumer("c", name="Old", group="g1"))])
    store.export([at(2, 10, Consumer("c", name="New"))])  # newer: name changes, group kept
    store.export([at(3, 500, Consumer("c", name="Oldest", group="g0"))])  # older: changes nothing
    with LocalReader(db) as reader:
        assert list(reader.consumer_labels()) == [("c", "New", "g1")]


V1_DDL = [sql for sql in MIGRATIONS[0] if isinstance(sql, str)]


def test_a_v1_file_is_migrated_with_its_rollups_backfilled(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    rng = random.Random(5)
    old = [record(i, rng, "old") for i in range(300)]
    scratch = LocalStore(tmp_path / "scratch.db")  # the v1 rows, as spanlytics 0.1 wrote them
    scratch.export(old)
    scratch.shutdown()
    conn = sqlite3.connect(db)
    for sql in V1_DDL:
        conn.execute(sql)
    conn.execute("ATTACH ? AS scratch", (str(tmp_path / "scratch.db"),))
    conn.execute("INSERT INTO requests SELECT * FROM scratch.requests")
    conn.commit()
    conn.execute("DETACH scratch")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with LocalReader(db) as reader:  # read-only, not migrated: computed from the records
        computed = sorted(reader.endpoint_rollups(None), key=str)
    store = LocalStore(db)
    store.export([record(i, rng, "new") for i in range(50)])
    store.shutdown()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    endpoints, consumers = rollup_counts(db)
    assert (endpoints, consumers) == record_counts(db)
    assert sum(endpoints.values()) == 350
    with LocalReader(db) as reader:
        labels = {row[0] for row in reader.consumer_labels()}
        assert {"acme", "zed"} <= labels
    with LocalReader(db) as reader:  # the v1 reader's rows equal the migrated tables' for the same records
        migrated = {(m, key_value(r), c): row for (m, r, c, *row) in reader.endpoint_rollups(None)}
    assert sum(row[3] for row in computed) == 300 and sum(v[0] for v in migrated.values()) == 350


BATCHES, BATCH = 10, 200


def _writer(db: str, prefix: str, start: EventType) -> None:
    rng = random.Random(prefix)
    store = LocalStore(db)
    start.wait()
    for b in range(BATCHES):
        batch = [record(b * BATCH + i, rng, prefix) for i in range(BATCH)]
        store.export(batch)
        store.export(batch[: BATCH // 2])  # a retry of half a batch: counted once
    store.shutdown()
    raise SystemExit(0 if store.dropped == 0 else 1)


def test_four_processes_give_exact_rollup_counts(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [ctx.Process(target=_writer, args=(str(db), f"p{n}", start)) for n in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    endpoints, consumers = rollup_counts(db)
    assert sum(endpoints.values()) == sum(consumers.values()) == 4 * BATCHES * BATCH
    assert (endpoints, consumers) == record_counts(db)


def test_report_counts_the_requests_sent_to_a_real_server(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    port = free_port()
    env = {
        "SPANLYTICS_TEST_VARIANT": "spanlytics",
        "SPANLYTICS_LOCAL_PATH": str(db),
        "SPANLYTICS_FLUSH_INTERVAL": "0.1",
    }
    proc = start_server(
        uvicorn_argv("tests.support.edge_apps:fastapi_app", port), port=port, log_dir=tmp_path, env=env
    )
    sent = 60
    try:
        with requests.Session() as http:
            for i in range(sent):
                http.get(f"{proc.base_url}/items/{i}", timeout=10).raise_for_status()

        def total() -> int:
            try:
                return int(build_report(db)["total"])
            except (FileNotFoundError, sqlite3.Error):
                return 0

        poll_until(lambda: total() >= sent, 30, "the records of every request")
    finally:
        proc.stop()
    report = build_report(db, since_s=3600)
    (items,) = [e for e in report["endpoints"] if e["route"] == "/items/{item_id}"]
    assert items["count"] == sent == report["total"]
    assert items["p50_ms"] is not None and items["error_count"] == 0
    assert len(list(iter_records(db))) == sent
