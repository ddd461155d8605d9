"""Retention and the size cap of the local store, on real files."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from spanlytics.destinations.any_store import prune
from spanlytics.destinations.local import LocalStore, iter_records
from spanlytics.destinations.local.retention import prune_local, used_bytes
from spanlytics.destinations.rollups import MINUTE_NS
from spanlytics.destinations.stores import Pruned
from spanlytics.record import RequestRecord

DAY_NS = 86400 * 1_000_000_000
NOW_NS = time.time_ns()


def rec(i: int, start_ns: int, body: str | None = None) -> RequestRecord:
    return RequestRecord(
        record_id=f"r-{i}", trace_id=f"{i:032x}", span_id=f"{i:016x}", start_time_ns=start_ns,
        duration_ms=1.0, method="GET", route="/a", path="/a", url="http://api.test/a", query="",
        status=200, request_body=body, response_body=body,
    )  # fmt: skip


def counts(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        records = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        minutes = conn.execute("SELECT count(*) FROM endpoint_minutes").fetchone()[0]
    return records, minutes


def test_prune_removes_exactly_the_old_records_and_rollup_minutes(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    cutoff = NOW_NS - 7 * DAY_NS
    old = [rec(i, cutoff - 1 - i * MINUTE_NS) for i in range(2500)]  # more than two chunks
    kept = [rec(10_000 + i, cutoff + i) for i in range(5)]  # the first exactly at the cutoff
    store = LocalStore(db, retention_s=None, rollup_retention_s=None)
    store.export(old + kept)
    store.shutdown()
    assert prune(str(db), older_than_s=7 * 86400, now_ns=NOW_NS) == Pruned(2500, 0)
    assert sorted(r.record_id for r in iter_records(db)) == sorted(r.record_id for r in kept)
    assert counts(db)[1] >= 2500  # rollups are left alone without --rollups-older-than
    pruned = prune_local(db, older_than_s=7 * 86400, rollups_older_than_s=7 * 86400, now_ns=NOW_NS)
    assert pruned.records == 0 and pruned.rollup_rows >= 2500
    with sqlite3.connect(db) as conn:
        (oldest,) = conn.execute("SELECT min(minute) FROM endpoint_minutes").fetchone()
    assert oldest == cutoff // MINUTE_NS  # the minute holding the cutoff stays: it has newer requests
    assert [r.record_id for r in iter_records(db)] == [r.record_id for r in kept]


def test_the_store_deletes_expired_records_in_the_background_in_small_chunks(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    setup = LocalStore(db, retention_s=None)
    setup.export([rec(i, NOW_NS - 40 * DAY_NS + i) for i in range(2500)])
    setup.shutdown()
    store = LocalStore(db, retention_s=30 * 86400)
    store.export([rec(100_000, NOW_NS)])  # right after start: one chunk of 1,000
    assert counts(db)[0] == 1 + 1500
    store.export([rec(100_001, NOW_NS)])  # more remained: the next chunk after the next batch
    store.export([rec(100_002, NOW_NS)])
    assert counts(db)[0] == 3
    store.export([rec(100_003, NOW_NS - 40 * DAY_NS)])  # nothing was left: next run in a minute
    assert {r.record_id for r in iter_records(db)} == {f"r-{100_000 + i}" for i in range(4)}
    assert store.dropped == 0


def test_the_size_cap_keeps_the_file_near_it_and_the_newest_records(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = LocalStore(db, max_mb=1)
    body = "x" * 2000
    for b in range(40):  # about 4 MB of records through a 1 MB cap
        store.export([rec(b * 50 + i, NOW_NS - (40 - b) * 1_000_000_000 + i, body) for i in range(50)])
        with sqlite3.connect(db) as conn:
            assert used_bytes(conn) <= 1.3 * 2**20
    store.shutdown()
    assert store.dropped == 0
    ids = {r.record_id for r in iter_records(db)}
    assert {f"r-{39 * 50 + i}" for i in range(50)} <= ids  # the newest batch is all there
    assert "r-0" not in ids and len(ids) < 600
    assert os.path.getsize(db) <= 1.5 * 2**20  # incremental vacuum gave the free pages back
    with sqlite3.connect(db) as conn:  # the rollups still count every request
        assert conn.execute("SELECT sum(count) FROM endpoint_minutes").fetchone()[0] == 2000


def test_incremental_vacuum_shrinks_the_file(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = LocalStore(db, retention_s=None)
    store.export([rec(i, NOW_NS - 10 * DAY_NS, "y" * 4000) for i in range(1000)])
    store.export([rec(5000, NOW_NS)])
    store.shutdown()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = os.path.getsize(db)
    assert prune_local(db, older_than_s=86400, now_ns=NOW_NS).records == 1000
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert os.path.getsize(db) < before / 5
    assert [r.record_id for r in iter_records(db)] == ["r-5000"]
