"""The SQLite local store: round trip, concurrency, fork safety, schema versions, failures."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import time
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import pytest
import requests

from spanlytics.consumer import Consumer
from spanlytics.destinations import Destination, local
from spanlytics.destinations.local import (
    SCHEMA_VERSION,
    LocalOptions,
    LocalStore,
    SchemaError,
    iter_records,
)
from spanlytics.destinations.local import schema as schema_module
from spanlytics.destinations.local import store as store_module
from spanlytics.record import ExceptionInfo, MaskedField, RequestRecord
from tests.support.servers import free_port, gunicorn_argv, poll_until, start_server, uvicorn_argv

BATCH = 256
BATCHES_PER_PROCESS = 20
# Recent enough that the default retention (30 days) keeps every record the tests write.
BASE_NS = time.time_ns() - 2 * 3600 * 1_000_000_000


def make_record(i: int, prefix: str = "r", **overrides: object) -> RequestRecord:
    fields: dict[str, object] = {
        "record_id": f"{prefix}-{i}",
        "trace_id": f"{i:032x}",
        "span_id": f"{i:016x}",
        "start_time_ns": BASE_NS + i * 1_000_000,
        "duration_ms": 1.5 + i,
        "method": "GET",
        "route": "/items/{item_id}",
        "path": f"/items/{i}",
        "url": f"http://api.test/items/{i}",
        "query": "",
        "status": 200,
    }
    fields.update(overrides)
    return RequestRecord(**fields)  # type: ignore[arg-type]


def full_record() -> RequestRecord:
    """Every field set, with non-ASCII text, to prove nothing is lost on the way."""
    return RequestRecord(
        record_id="full-1",
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        start_time_ns=BASE_NS + 123_456_789,
        duration_ms=12.345678901234,
        method="POST",
        route="/orders/{order_id}",
        path="/orders/42",
        url="https://api.test:8443/orders/42?x=1&y=é",
        query="x=1&y=é",
        status=201,
        scheme="https",
        host="api.test:8443",
        http_version="2",
        client_ip="203.0.113.7",
        user_agent="curl/8.0 ✓",
        request_headers=(("content-type", "application/json"), ("x-dup", "a"), ("x-dup", "b")),
        response_headers=(("content-type", "application/json; charset=utf-8"),),
        request_content_type="application/json",
        response_content_type="application/json; charset=utf-8",
        request_body='{"name": "Zoë", "token": "[REDACTED]"}',
        response_body='{"id": 42}',
        request_size=40,
        response_size=10,
        request_body_truncated=True,
        response_body_truncated=False,
        consumer=Consumer("acme", name="Acme Corp", group="enterprise", email="ops@acme.test"),
        exception=ExceptionInfo("ValueError", "bad thing", "Traceback ...\nValueError: bad thing"),
        service_name="orders-api",
        masked=(MaskedField("request.body.token", "token"), MaskedField("request.headers.cookie", "cookie")),
    )


def row_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


# --- round trip and basic behaviour ---------------------------------------------------------


def test_is_a_destination(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "a.db")
    assert isinstance(store, Destination)
    assert store.name == "local"


def test_round_trip_gives_equal_records(tmp_path: Path) -> None:
    db = tmp_path / "spanlytics.db"
    records = [full_record(), make_record(1), make_record(2, route=None, status=None)]
    store = LocalStore(db)
    store.export(records)
    store.shutdown()
    assert store.dropped == 0
    assert list(iter_records(db)) == sorted(records, key=lambda r: r.start_time_ns)


def test_file_is_wal_and_versioned(tmp_path: Path) -> None:
    db = tmp_path / "spanlytics.db"
    LocalStore(db).export([make_record(1)])
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(requests)")}
    assert {"requests_start_time", "requests_endpoint", "requests_consumer"} <= indexes
    assert user_version(db) == SCHEMA_VERSION


def test_replayed_batch_is_not_duplicated(tmp_path: Path) -> None:
    db = tmp_path / "spanlytics.db"
    store = LocalStore(db)
    batch = [make_record(i) for i in range(10)]
    store.export(batch)
    store.export(batch)
    assert row_count(db) == 10
    assert store.dropped == 0


def test_large_batches_are_written_in_multi_row_statements(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = LocalStore(db)
    batch = [make_record(i) for i in range(600)]  # more rows than one statement takes
    store.export(batch)
    store.export(batch[100:700] + [make_record(i) for i in range(600, 650)])  # replays ignored
    store.shutdown()
    assert row_count(db) == 650
    stored = list(iter_records(db))
    assert {r.record_id for r in stored} == {f"r-{i}" for i in range(650)}
    assert next(r for r in stored if r.record_id == "r-599") == make_record(599)


def test_since_filter(tmp_path: Path) -> None:
    db = tmp_path / "spanlytics.db"
    LocalStore(db).export([make_record(i) for i in range(10)])
    cutoff = make_record(7).start_time_ns
    assert [r.record_id for r in iter_records(db, since_ns=cutoff)] == ["r-7", "r-8", "r-9"]


def test_empty_batch_does_not_create_a_file(tmp_path: Path) -> None:
    db = tmp_path / "spanlytics.db"
    LocalStore(db).export([])
    assert not db.exists()


def test_reading_a_missing_file_raises_at_call_time(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no spanlytics database"):
        iter_records(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()


def test_force_flush_and_shutdown(tmp_path: Path) -> None:
    db = tmp_path / "spanlytics.db"
    store = LocalStore(db)
    store.export([make_record(1)])
    assert store.force_flush(timeout_s=1.0) is True
    store.shutdown()
    store.export([make_record(2), make_record(3)])
    assert store.dropped == 2
    assert row_count(db) == 1


# --- failures: never raise, count, warn with the path ---------------------------------------


def test_unwritable_path_drops_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("x")
    db = not_a_dir / "spanlytics.db"
    store = LocalStore(db)
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        store.export([make_record(1), make_record(2)])
        store.export([make_record(3)])
    assert store.dropped == 3
    assert store.force_flush(timeout_s=1.0) is True
    store.shutdown()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # throttled
    assert str(db) in warnings[0]
    assert "FileExistsError" in warnings[0]  # the parent is a file, so it cannot be created
    assert "/items/" not in warnings[0]  # never a record value


def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    db = tmp_path / "var" / "lib" / "api" / "spanlytics.db"
    store = LocalStore(db)
    store.export([make_record(1)])
    store.shutdown()
    assert store.dropped == 0
    assert [r.record_id for r in iter_records(db)] == [make_record(1).record_id]


def test_a_default_style_relative_path_in_a_new_directory_just_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The package docstring promises it (it used to say the opposite): a user who configures
    # ./data/spanlytics.db expects records there, not a warning per batch and nothing stored.
    assert "Missing parent directories of the path are created" in (local.__doc__ or "")
    monkeypatch.chdir(tmp_path)
    store = LocalStore(LocalOptions.resolve({"SPANLYTICS_LOCAL_PATH": "./data/spanlytics.db"}, {}).path)
    store.export([make_record(1)])
    store.shutdown()
    assert store.dropped == 0
    assert (tmp_path / "data").is_dir()
    assert [r.record_id for r in iter_records(tmp_path / "data" / "spanlytics.db")] == [
        make_record(1).record_id
    ]


def test_not_a_database_file_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "notes.db"
    db.write_bytes(b"these are my notes, not a database" * 100)
    store = LocalStore(db)
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        store.export([make_record(1)])
    assert store.dropped == 1
    assert db.read_bytes() == b"these are my notes, not a database" * 100
    assert str(db) in caplog.text


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE requests (something TEXT)")
    store = LocalStore(db)
    store.export([make_record(1)])
    assert store.dropped == 1
    assert user_version(db) == 0
    with pytest.raises(SchemaError):
        iter_records(db)


def test_locked_database_drops_then_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "spanlytics.db"
    store = LocalStore(db, busy_timeout_s=0.05)
    store.export([make_record(1)])
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock too long
    try:
        with caplog.at_level(logging.WARNING, logger="spanlytics"):
            store.export([make_record(2), make_record(3)])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.dropped == 2
    assert "SQLITE_BUSY" in caplog.text or "locked" in caplog.text
    store.export([make_record(4)])
    assert store.dropped == 2
    assert [r.record_id for r in iter_records(db)] == ["r-1", "r-4"]


# --- schema versions -------------------------------------------------------------------------

# A frozen copy of the version-1 schema, as files written by spanlytics 0.1 contain it.
# It must never change: it proves that old files still open after MIGRATIONS grows.
V1_SCHEMA = """
CREATE TABLE requests (id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
  start_time_ns INTEGER NOT NULL, duration_ms REAL NOT NULL, method TEXT NOT NULL, route TEXT,
  path TEXT NOT NULL, url TEXT NOT NULL, query TEXT NOT NULL, status INTEGER,
  scheme TEXT NOT NULL, host TEXT NOT NULL, http_version TEXT NOT NULL, client_ip TEXT,
  user_agent TEXT, request_headers TEXT NOT NULL, response_headers TEXT NOT NULL,
  request_content_type TEXT, response_content_type TEXT, request_body TEXT, response_body TEXT,
  request_size INTEGER, response_size INTEGER, request_body_truncated INTEGER NOT NULL,
  response_body_truncated INTEGER NOT NULL, consumer_id TEXT, consumer_name TEXT,
  consumer_group TEXT, consumer_email TEXT, exception_type TEXT, exception_message TEXT,
  exception_stacktrace TEXT, service_name TEXT, masked TEXT NOT NULL);
CREATE INDEX requests_start_time ON requests (start_time_ns);
CREATE INDEX requests_endpoint ON requests (method, route);
CREATE INDEX requests_consumer ON requests (consumer_id);
INSERT INTO requests VALUES ('old-1', 'aa', 'bb', 1000, 2.5, 'GET', '/health', '/health',
  'http://h/health', '', 200, 'http', 'h', '1.1', NULL, NULL, '[["accept","*/*"]]', '[]',
  NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, 'c1', 'Name', NULL, NULL, NULL, NULL, NULL, 'svc', '[]');
PRAGMA user_version = 1;
"""


def write_v1_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(V1_SCHEMA)
    conn.close()


def table_info(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return [tuple(row) for row in conn.execute("PRAGMA table_info(requests)")]


def test_v1_file_written_earlier_opens_and_keeps_its_rows(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    write_v1_file(old)
    store = LocalStore(old, retention_s=None)  # its record is from 1970
    store.export([make_record(1)])
    assert store.dropped == 0
    assert user_version(old) == SCHEMA_VERSION
    records = list(iter_records(old))
    assert [r.record_id for r in records] == ["old-1", "r-1"]
    assert records[0].request_headers == (("accept", "*/*"),)
    assert records[0].consumer == Consumer("c1", name="Name")


def test_migration_v1_creates_the_frozen_v1_schema(tmp_path: Path) -> None:
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    write_v1_file(old)
    store = LocalStore(new)
    store.export([make_record(1)])
    if SCHEMA_VERSION == 1:
        assert table_info(new) == table_info(old)


def test_a_later_migration_adds_a_column_to_a_v1_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "old.db"
    write_v1_file(old)
    v2 = ("ALTER TABLE requests ADD COLUMN region TEXT",)
    monkeypatch.setattr(schema_module, "MIGRATIONS", (*local.MIGRATIONS, v2))
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    store = LocalStore(old, retention_s=None)
    store.export([make_record(1)])
    assert store.dropped == 0
    assert user_version(old) == SCHEMA_VERSION + 1
    assert "region" in [col[1] for col in table_info(old)]
    assert [r.record_id for r in iter_records(old)] == ["old-1", "r-1"]


def test_future_schema_version_is_not_written(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "spanlytics.db"
    LocalStore(db).export([make_record(1), make_record(2)])
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    before = db.read_bytes()
    store = LocalStore(db)
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        store.export([make_record(3)])
        store.export([make_record(4)])
    store.shutdown()
    assert store.dropped == 2
    assert user_version(db) == SCHEMA_VERSION + 5
    assert db.read_bytes() == before
    assert str(db) in caplog.text and "newer" in caplog.text
    # Readers still read it: later versions only add columns.
    assert [r.record_id for r in iter_records(db)] == ["r-1", "r-2"]


# --- concurrency and fork safety -------------------------------------------------------------


def _write_batches(db: str, prefix: str, start: EventType) -> None:
    """Child process: wait for the start signal, then write batches as fast as possible."""
    store = LocalStore(db)
    start.wait()
    for b in range(BATCHES_PER_PROCESS):
        store.export([make_record(b * BATCH + i, prefix) for i in range(BATCH)])
    store.shutdown()
    raise SystemExit(0 if store.dropped == 0 else 1)


def test_two_processes_write_concurrently_without_losing_rows(tmp_path: Path) -> None:
    db = tmp_path / "spanlytics.db"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers = [ctx.Process(target=_write_batches, args=(str(db), name, start)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert row_count(db) == 2 * BATCHES_PER_PROCESS * BATCH
    ids = {r.record_id for r in iter_records(db)}
    assert f"a-{BATCHES_PER_PROCESS * BATCH - 1}" in ids and "b-0" in ids


def test_forked_children_open_their_own_connection(tmp_path: Path) -> None:
    """gunicorn --preload: the store (and its open connection) exists before the fork."""
    db = tmp_path / "spanlytics.db"
    store = LocalStore(db)
    store.export([make_record(0, "parent")])
    parent_conn = store._conn
    assert parent_conn is not None
    ctx = multiprocessing.get_context("fork")

    def child(prefix: str) -> None:
        for b in range(5):
            store.export([make_record(b * BATCH + i, prefix) for i in range(BATCH)])
        reused = store._conn is parent_conn  # sharing a SQLite connection across fork corrupts
        raise SystemExit(0 if store.dropped == 0 and not reused else 1)

    workers = [ctx.Process(target=child, args=(name,)) for name in ("c1", "c2")]
    for worker in workers:
        worker.start()
    store.export([make_record(1, "parent")])  # the parent keeps using its own connection
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    store.export([make_record(2, "parent")])
    assert store.dropped == 0
    assert row_count(db) == 3 + 2 * 5 * BATCH


def test_fork_while_the_lock_is_held_does_not_deadlock_the_child(tmp_path: Path) -> None:
    db = tmp_path / "spanlytics.db"
    store = LocalStore(db)
    store.export([make_record(0)])
    ctx = multiprocessing.get_context("fork")

    def child() -> None:
        store.export([make_record(1)])
        raise SystemExit(0 if store.dropped == 0 else 1)

    with store._lock:  # as if the worker thread was mid-export when the app forked
        worker = ctx.Process(target=child)
        worker.start()
        worker.join(timeout=60)
    assert worker.exitcode == 0
    assert row_count(db) == 2


def test_batches_of_every_length_prepare_few_distinct_statements(tmp_path: Path) -> None:
    # sqlite3 keeps every distinct statement it prepares (up to 128 per connection), and a
    # multi-row INSERT holds hundreds of KB: one statement per batch length grew the RSS by
    # megabytes under load. Full statements plus powers of two bound them to a handful.
    store = LocalStore(tmp_path / "a.db")
    store.export([make_record(-1)])
    conn = store._conn
    assert conn is not None
    rows_per_insert: set[int] = set()

    def seen(sql: str) -> None:
        if sql.startswith("INSERT"):
            rows_per_insert.add(sql.count("), (") + 1)

    conn.set_trace_callback(seen)
    per = store_module._rows_per_statement(conn)  # 28 where Python < 3.11 cannot read SQLite's limit
    total = 1
    for length in range(1, 2 * store_module._MAX_ROWS_PER_STATEMENT + 3):
        store.export([make_record(total + i) for i in range(length)])
        total += length
    store.shutdown()
    assert row_count(tmp_path / "a.db") == total
    assert rows_per_insert == {per} | {1 << k for k in range(per.bit_length()) if 1 << k < per}


@pytest.mark.parametrize("deleted", [("",), ("", "-wal", "-shm")], ids=["file", "file-wal-shm"])
def test_a_file_deleted_while_in_use_is_recreated_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, deleted: tuple[str, ...]
) -> None:
    db = tmp_path / "api.db"
    store = LocalStore(db)
    store.export([make_record(i, "before") for i in range(3)])
    for suffix in deleted:  # `rm api.db` or `rm api.db*` while the app runs
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING, "spanlytics"):
        store.export([make_record(i, "after") for i in range(3)])
        store.export([make_record(i, "later") for i in range(2)])
    assert sorted(r.record_id for r in iter_records(db)) == [
        "after-0",
        "after-1",
        "after-2",
        "later-0",
        "later-1",
    ]
    assert store.dropped == 0
    assert caplog.text.count("was deleted or replaced") == 1
    store.shutdown()


LIVE_SERVERS = {
    "fastapi-uvicorn": lambda port: uvicorn_argv("tests.support.edge_apps:fastapi_app", port),
    "flask-gunicorn": lambda port: gunicorn_argv(
        "tests.support.edge_apps:flask_app", port, "--worker-class", "gthread", "--threads", "2"
    ),
}


def _stored_paths(db: Path) -> set[str]:
    try:
        return {r.path for r in iter_records(db)}
    except (FileNotFoundError, SchemaError, sqlite3.Error):  # not (re)created yet
        return set()


@pytest.mark.parametrize("server", sorted(LIVE_SERVERS))
def test_deleting_the_database_under_a_running_server_loses_nothing_later(
    server: str, tmp_path: Path
) -> None:
    db = tmp_path / "live.db"
    port = free_port()
    env = {"SPANLYTICS_TEST_VARIANT": "spanlytics", "SPANLYTICS_LOCAL_PATH": str(db)}
    proc = start_server(
        LIVE_SERVERS[server](port),
        port=port,
        log_dir=tmp_path,
        env={**env, "SPANLYTICS_FLUSH_INTERVAL": "0.1"},
    )
    try:
        requests.get(f"{proc.base_url}/items/1", timeout=10).raise_for_status()
        poll_until(lambda: "/items/1" in _stored_paths(db), 20, "the first record")
        for suffix in ("", "-wal", "-shm"):  # `rm live.db*` while the server runs
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        for item in (2, 3):
            requests.get(f"{proc.base_url}/items/{item}", timeout=10).raise_for_status()
        poll_until(lambda: {"/items/2", "/items/3"} <= _stored_paths(db), 20, "records after the deletion")
        assert "/items/1" not in _stored_paths(db)
    finally:
        proc.stop()
    assert proc.log().count("was deleted or replaced while in use") == 1
