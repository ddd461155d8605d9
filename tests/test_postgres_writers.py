"""Many writers on one PostgreSQL store: real processes, a schema raced into being, and an
outage under load (the server stopped for 10 s, then started)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

from spanlytics.config import Settings
from spanlytics.destinations.postgres import PostgresOptions, PostgresStore, build_postgres
from spanlytics.destinations.postgres.rows import copy_batches
from spanlytics.destinations.postgres.schema import SCHEMA_VERSION
from spanlytics.destinations.postgres.transport import PostgresTransport
from tests.support.postgres import WRITER_PASSWORD, PgDatabase
from tests.support.records import make_record
from tests.support.servers import poll_until
from tests.test_postgres import assert_hours_match, assert_rollups_match, sample_records

pytest_plugins = ["tests.support.postgres"]  # the pg_server and pg_db fixtures

SPAWN = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited threads or sockets


def _store(url: str, spool: str) -> PostgresStore:
    settings = Settings.resolve(
        {}, spool_dir=spool, retention_s="off", rollup_retention_s="off", delivery_backoff_max_s=0.5
    )  # the sample records are of 2023: retention would prune them
    store = build_postgres(settings, PostgresOptions(url=url))
    assert isinstance(store, PostgresStore)
    return store


def _writer(url: str, prefix: str, spool: str, start: threading.Barrier) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    store = _store(url, spool)
    records = sample_records(1000, prefix)
    start.wait(30)
    for i in range(0, len(records), 100):
        store.export(records[i : i + 100])
    store.shutdown(60)
    assert store.sender.stats()["records_sent"] == 1000, store.sender.stats()


def test_four_writer_processes_count_exactly(pg_db: PgDatabase, tmp_path: Path) -> None:
    start = SPAWN.Barrier(4)
    procs = [
        SPAWN.Process(target=_writer, args=(pg_db.url, f"p{n}-", str(tmp_path / f"spool{n}"), start))
        for n in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    assert pg_db.count() == 4000
    assert pg_db.sql("SELECT count(DISTINCT id) FROM requests") == [(4000,)]
    everything = [r for n in range(4) for r in sample_records(1000, f"p{n}-")]
    assert_rollups_match(pg_db.url, everything)  # rollups of 4 processes' upserts add up exactly
    assert_hours_match(pg_db)  # the hours too (the records span two hours)


def _first_batch(url: str, prefix: str, start: threading.Barrier) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    transport = PostgresTransport(url)
    batch = next(copy_batches(sample_records(50, prefix), 50, 1 << 20))
    start.wait(30)
    answer = transport.send(batch)  # connects, creates the schema, writes
    transport.close()
    assert answer.outcome == "sent", answer


def test_schema_creation_raced_by_four_processes(pg_db: PgDatabase) -> None:
    start = SPAWN.Barrier(4)
    procs = [SPAWN.Process(target=_first_batch, args=(pg_db.url, f"s{n}-", start)) for n in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    assert pg_db.sql("SELECT version FROM spanlytics_schema") == [(SCHEMA_VERSION,)]
    assert pg_db.count() == 200
    assert pg_db.count("endpoint_minutes") > 0


def test_an_outage_under_load_loses_nothing_and_duplicates_nothing(pg_db: PgDatabase, tmp_path: Path) -> None:
    server = pg_db.server
    spool = tmp_path / "spool"
    store = _store(pg_db.url, str(spool))
    sent = 0
    stop = threading.Event()

    def load() -> None:  # the app's exporter thread: a batch every 50 ms
        nonlocal sent
        while not stop.is_set():
            batch = [
                make_record(record_id=f"o{sent + i}", start_time_ns=time.time_ns(), request_body="x" * 200)
                for i in range(20)
            ]
            store.export(batch)
            sent += len(batch)
            time.sleep(0.05)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        poll_until(lambda: pg_db.sql("SELECT to_regclass('requests')") != [(None,)], 20, "the schema")
        poll_until(lambda: pg_db.count() > 0, 20, "the first rows")
        server.stop("fast")
        try:
            down_until = time.monotonic() + 10
            poll_until(lambda: any(spool.rglob("*.batch")), 10, "batches spooled while the server is down")
            time.sleep(max(0.0, down_until - time.monotonic()))  # the outage lasts 10 s
        finally:
            server.start()
        restarted_at = sent
        poll_until(lambda: sent >= restarted_at + 400, 20, "load after the restart")  # 20 batches
    finally:
        stop.set()
        thread.join(10)
    assert store.force_flush(30)

    def all_arrived() -> bool:
        store.force_flush(1)
        return pg_db.count() >= sent

    poll_until(all_arrived, 60, f"{sent} rows")
    store.shutdown(30)
    assert pg_db.count() == sent
    assert pg_db.sql("SELECT count(DISTINCT id) FROM requests") == [(sent,)]
    assert pg_db.sql("SELECT sum(count)::bigint FROM endpoint_minutes") == [(sent,)]
    stats = store.sender.stats()
    assert stats["batches_spooled"] > 0 and stats["retries"] > 0 and not stats["dropped"], stats
    assert not list(spool.rglob("*.batch"))
    for file in spool.rglob("*"):
        if file.is_file():
            assert WRITER_PASSWORD.encode() not in file.read_bytes()
