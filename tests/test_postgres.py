"""The postgres destination against a real PostgreSQL server (tests/support/postgres.py):
round trip, rollups, idempotent retries, retention and bad input."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from spanlytics.config import Settings
from spanlytics.consumer import Consumer
from spanlytics.delivery.batches import Batch
from spanlytics.destinations.any_store import open_reader, prune
from spanlytics.destinations.local import LocalStore, iter_records
from spanlytics.destinations.postgres import PostgresStore, build_postgres, redact_url
from spanlytics.destinations.postgres.options import PostgresOptions, parse_postgres_url
from spanlytics.destinations.postgres.reader import PostgresReader
from spanlytics.destinations.postgres.retention import prune_postgres
from spanlytics.destinations.postgres.rows import LEGACY_FORMAT, copy_batches, copy_line, merge_batches
from spanlytics.destinations.postgres.transport import PostgresTransport
from spanlytics.destinations.rollups import MINUTE_NS, Rollups, Tally, parse_hist
from spanlytics.destinations.stores import RequestFilter, StoreError
from spanlytics.record import ExceptionInfo, MaskedField, RequestRecord
from tests.support.postgres import STRANGER, STRANGER_PASSWORD, WRITER_PASSWORD, PgDatabase
from tests.support.records import make_record

pytest_plugins = ["tests.support.postgres"]  # the pg_server and pg_db fixtures

T0 = 1_700_000_000 * 10**9


def sample_records(
    n: int, prefix: str = "r", t0: int = T0, step_ns: int = 7_000_000_000
) -> list[RequestRecord]:
    """Varied records: routes, statuses (and none), consumers with labels, bodies with the
    characters COPY escapes, exceptions, masked fields, sizes present and absent."""
    records = []
    for i in range(n):
        consumer = None if i % 4 == 0 else Consumer(f"c{i % 3}", f"Name {i % 5}" if i % 2 else None, "team-a")
        records.append(
            make_record(
                record_id=f"{prefix}{i}",
                start_time_ns=t0 + i * step_ns,  # several minutes
                duration_ms=0.5 + (i * 37 % 900) / 3,
                method=("GET", "POST", "DELETE")[i % 3],
                route=None if i % 11 == 0 else f"/items/{{id}}/{i % 4}",
                path=f"/items/{i}",
                status=None if i % 17 == 0 else (200, 201, 404, 500, 302)[i % 5],
                request_headers=(("content-type", "application/json"), ("x-tab", "a\tb")),
                request_body='{"q":"tab\\there", "nl":"line1\nline2\\\\", "u":"é✓"}' if i % 2 else None,
                response_body="back\\slash\r\nend\t" * (i % 3),
                request_size=None if i % 6 == 0 else 100 + i,
                response_size=2000 + i,
                request_body_truncated=bool(i % 7 == 0),
                consumer=consumer,
                exception=ExceptionInfo("ValueError", "bad\tvalue", "Traceback\n  line")
                if i % 9 == 0
                else None,
                masked=(MaskedField("$.password", "password"),) if i % 5 == 0 else (),
                service_name="svc",
                client_ip="10.0.0.1",
            )
        )
    return records


def send_all(url: str, records: list[RequestRecord], per_batch: int = 50) -> PostgresTransport:
    transport = PostgresTransport(url)
    for batch in copy_batches(records, per_batch, 1 << 20):
        assert transport.send(batch).outcome == "sent"
    return transport


def read_records(url: str) -> list[RequestRecord]:
    with PostgresReader(url) as reader:
        return list(reader.records())


def test_round_trip_equals_the_local_store(pg_db: PgDatabase, tmp_path: Path) -> None:
    records = sample_records(120)
    send_all(pg_db.url, records).close()
    local = LocalStore(tmp_path / "local.db", retention_s=None, rollup_retention_s=None)  # 1970 timestamps
    local.export(records)
    local.shutdown()
    from_pg = read_records(pg_db.url)
    assert len(from_pg) == 120
    assert from_pg == list(iter_records(tmp_path / "local.db"))
    with open_reader(pg_db.url) as reader:  # the stores' one entry point
        assert [r.record_id for r in reader.records(since_ns=T0 + 100 * 7_000_000_000)] == [
            f"r{i}" for i in range(100, 120)
        ]


def _expected(records: list[RequestRecord]) -> tuple[dict[Any, Tally], dict[Any, Tally]]:
    rollups = Rollups.of(records)
    endpoints: dict[Any, Tally] = defaultdict(Tally)
    for (_, method, route, klass), tally in rollups.endpoints.items():
        endpoints[(method, route or None, klass)].merge(tally)
    consumers: dict[Any, Tally] = defaultdict(Tally)
    for (_, cid, klass), tally in rollups.consumers.items():
        consumers[(cid or None, klass)].merge(tally)
    return endpoints, consumers


def _check(row: tuple[Any, ...], tally: Tally) -> None:
    count, errors, server_errors, duration, req_sum, req_n, resp_sum, resp_n, hist = row
    assert (count, errors, server_errors, req_sum, req_n, resp_sum, resp_n) == (
        tally.count, tally.errors, tally.server_errors, tally.request_size_sum, tally.request_size_n,
        tally.response_size_sum, tally.response_size_n,
    )  # fmt: skip
    assert math.isclose(duration, tally.duration_ms_sum, rel_tol=1e-12)
    assert parse_hist(hist) == tally.hist


def assert_rollups_match(url: str, records: list[RequestRecord]) -> None:
    endpoints, consumers = _expected(records)
    with PostgresReader(url) as reader:
        got_endpoints = {tuple(r[:3]): r[3:] for r in reader.endpoint_rollups(None)}
        got_consumers = {tuple(r[:2]): r[2:] for r in reader.consumer_rollups(None)}
        labels = set(reader.consumer_labels())
    assert set(got_endpoints) == set(endpoints)
    assert set(got_consumers) == set(consumers)
    for key, tally in endpoints.items():
        _check(got_endpoints[key], tally)
    for key, tally in consumers.items():
        _check(got_consumers[key], tally)
    expected_labels = {(cid, name, group) for cid, (name, group, _) in Rollups.of(records).labels.items()}
    assert labels == expected_labels


def _summed_per_hour(rows: list[Any]) -> dict[Any, Tally]:
    """Rollup rows (minute, key..., tally columns) added up per (minute // 60, key...)."""
    hours: dict[Any, Tally] = defaultdict(Tally)
    for minute, *rest in rows:
        *key, count, errors, server_errors, duration, req_sum, req_n, resp_sum, resp_n, hist = rest
        tally = Tally(count, errors, server_errors, duration, req_sum, req_n, resp_sum, resp_n)
        tally.hist = parse_hist(hist)
        hours[(minute // 60, *key)].merge(tally)
    return hours


def assert_hours_match(db: PgDatabase) -> None:
    """Every hour row is its minute rows added up (histograms included), and no hour is missing."""
    for kind, keys in (
        ("endpoint", "method, route, status_class"),
        ("consumer", "consumer_id, status_class"),
    ):
        columns = f"{keys}, count, errors, server_errors, duration_ms_sum, request_size_sum, " + (
            "request_size_n, response_size_sum, response_size_n, hist"
        )
        expected = _summed_per_hour(db.sql(f"SELECT minute, {columns} FROM {kind}_minutes"))
        got = {tuple(r[: keys.count(",") + 2]): r[keys.count(",") + 2 :] for r in db.sql(
            f"SELECT hour, {columns} FROM {kind}_hours"
        )}  # fmt: skip
        assert expected and set(got) == set(expected)
        for key, tally in expected.items():
            _check(got[key], tally)


def test_rollups_are_exact_and_a_retried_batch_counts_once(pg_db: PgDatabase) -> None:
    records = sample_records(300, step_ns=37_000_000_000)  # three hours
    batches = list(copy_batches(records, 40, 1 << 20))
    transport = PostgresTransport(pg_db.url)
    for batch in batches:
        assert transport.send(batch).outcome == "sent"
    for batch in batches[:3]:  # the answer was lost: the sender sends them again
        assert transport.send(batch).outcome == "sent"
    transport.close()
    transport = PostgresTransport(pg_db.url)  # and from a new connection
    assert transport.send(batches[-1]).outcome == "sent"
    transport.close()
    assert pg_db.count() == 300
    assert pg_db.sql("SELECT count(DISTINCT id) FROM requests") == [(300,)]
    assert_rollups_match(pg_db.url, records)
    assert len(pg_db.sql("SELECT DISTINCT hour FROM endpoint_hours")) == 4  # T0 is at minute 13
    assert_hours_match(pg_db)  # the fast path, then the fallback of the retries
    # a window: minutes from the 10th record's minute on
    since_minute = records[10].start_time_ns // MINUTE_NS
    later = [r for r in records if r.start_time_ns // MINUTE_NS >= since_minute]
    with PostgresReader(pg_db.url) as reader:
        assert sum(r[3] for r in reader.endpoint_rollups(since_minute)) == len(later)
        raw = list(reader.raw_rows(records[0].start_time_ns, records[5].start_time_ns))
    assert sorted(raw, key=repr) == sorted(
        ((r.method, r.route, r.consumer.identifier if r.consumer else None, r.status, r.duration_ms,
          r.request_size, r.response_size) for r in records[:5]),
        key=repr,
    )  # fmt: skip


def test_batches_joined_while_they_wait_are_written_and_counted_as_one(pg_db: PgDatabase) -> None:
    records = sample_records(300, step_ns=23_000_000_000)  # about two hours, many minutes
    for record in records[::7]:  # labels that change: the newest non-null wins across parts
        object.__setattr__(record, "consumer", Consumer("c1", f"name at {record.start_time_ns}", None))
    parts = list(copy_batches(records, 50, 1 << 20))
    joined = parts[0]
    for part in parts[1:]:
        merged = merge_batches(joined, part, max_records=10_000, max_bytes=1 << 24)
        assert merged is not None
        joined = merged
    assert joined.records == 300 and joined.body.startswith(b"[{")  # an array of six documents
    assert merge_batches(joined, parts[0], max_records=320, max_bytes=1 << 24) is None  # the caps
    assert merge_batches(joined, parts[0], max_records=10_000, max_bytes=len(joined.body)) is None
    transport = PostgresTransport(pg_db.url)
    assert transport.send(joined).outcome == "sent"
    assert transport.send(joined).outcome == "sent"  # again (a lost answer): counted once
    transport.close()
    assert pg_db.count() == 300
    assert_rollups_match(pg_db.url, records)
    assert_hours_match(pg_db)
    expected = Rollups.of(records).labels["c1"][0]  # the latest non-null name, as one batch has it
    assert pg_db.sql("SELECT name FROM consumers WHERE consumer_id = 'c1'") == [(expected,)]


def test_a_batch_partly_stored_stores_and_counts_only_its_new_records(pg_db: PgDatabase) -> None:
    records = sample_records(120, step_ns=61_000_000_000)  # two hours
    transport = send_all(pg_db.url, records[:60], per_batch=30)
    # new records first, then ones the store holds, then new ones: the COPY straight into
    # requests fails part-way, and the fallback stores (and counts) the 60 new records only
    mixed = records[60:80] + records[10:60] + records[80:120]
    (batch,) = copy_batches(mixed, 200, 1 << 20)
    assert transport.send(batch).outcome == "sent"
    assert transport.send(batch).outcome == "sent"  # and all of it again: nothing new
    transport.close()
    assert pg_db.count() == 120
    assert pg_db.sql("SELECT count(DISTINCT id) FROM requests") == [(120,)]
    assert_rollups_match(pg_db.url, records)
    assert_hours_match(pg_db)


def test_a_copy_v1_batch_from_an_older_spool_is_written_and_counted_once(pg_db: PgDatabase) -> None:
    records = sample_records(80, step_ns=97_000_000_000)  # two hours
    legacy = Batch(
        b"".join(copy_line(r).encode("utf-8", "replace") for r in records[:50]),
        50,
        LEGACY_FORMAT,
        "text/tab-separated-values",
    )  # what copy_batches wrote before the rollups line
    transport = PostgresTransport(pg_db.url)
    assert transport.send(legacy).outcome == "sent"
    assert transport.send(legacy).outcome == "sent"
    for batch in copy_batches(records[40:], 20, 1 << 20):  # overlapping v2 batches
        assert transport.send(batch).outcome == "sent"
    transport.close()
    assert pg_db.count() == 80
    assert_rollups_match(pg_db.url, records)
    assert_hours_match(pg_db)


def test_only_the_fallback_writes_hours_equal_to_the_minutes(pg_db: PgDatabase) -> None:
    records = sample_records(150, step_ns=53_000_000_000)
    transport = PostgresTransport(pg_db.url)
    for batch in copy_batches(records, 40, 1 << 20):
        # a copy-v1 batch: the temporary table, INSERT ... RETURNING, the rollups of what it returns
        legacy = Batch(batch.body.split(b"\n", 1)[1], batch.records, LEGACY_FORMAT, batch.content_type)
        assert transport.send(legacy).outcome == "sent"
    transport.close()
    assert pg_db.count() == 150
    assert_rollups_match(pg_db.url, records)
    assert_hours_match(pg_db)


@pytest.mark.parametrize("offset_min", [-30, 0, 1, 13, 47, 59, 60, 61, 95, 150, 500])
def test_a_window_starting_mid_hour_equals_the_records_in_it(pg_db: PgDatabase, offset_min: int) -> None:
    records = sample_records(200, step_ns=43_000_000_000)  # minute 13 of an hour, for 2.4 hours
    send_all(pg_db.url, records).close()
    from_minute = T0 // MINUTE_NS + offset_min
    window = [r for r in records if r.start_time_ns // MINUTE_NS >= from_minute]
    endpoints, consumers = _expected(window)
    with PostgresReader(pg_db.url) as reader:
        got_endpoints = {tuple(r[:3]): r[3:] for r in reader.endpoint_rollups(from_minute)}
        got_consumers = {tuple(r[:2]): r[2:] for r in reader.consumer_rollups(from_minute)}
    assert set(got_endpoints) == set(endpoints) and set(got_consumers) == set(consumers)
    for key, tally in endpoints.items():
        _check(got_endpoints[key], tally)
    for key, tally in consumers.items():
        _check(got_consumers[key], tally)


def test_rollup_keys_are_the_stored_keys_nul_and_lone_surrogates_included(pg_db: PgDatabase) -> None:
    odd = [
        make_record(
            record_id="n1", start_time_ns=T0, route="/a\0b", consumer=Consumer("c\0", "n\ud800", None)
        ),
        make_record(
            record_id="n2", start_time_ns=T0, route="/a\ufffdb", consumer=Consumer("c\ufffd", None, "g")
        ),
        make_record(record_id="n3", start_time_ns=T0, route="/\ud800", status=500),
    ]  # "/a\0b" is stored as "/a\ufffdb": one rollup key with the second record
    transport = send_all(pg_db.url, odd)
    assert transport.send(next(copy_batches(odd, 10, 1 << 20))).outcome == "sent"  # the fallback
    transport.close()
    assert pg_db.sql("SELECT route, count(*) FROM requests GROUP BY route ORDER BY route") == [
        ("/?", 1),
        ("/a\ufffdb", 2),
    ]
    assert pg_db.sql("SELECT route, count FROM endpoint_minutes ORDER BY route") == [
        ("/?", 1),
        ("/a\ufffdb", 2),
    ]
    assert pg_db.sql("SELECT consumer_id, count FROM consumer_minutes ORDER BY consumer_id") == [
        ("", 1),
        ("c\ufffd", 2),
    ]
    assert pg_db.sql("SELECT consumer_id, name, group_name FROM consumers") == [("c\ufffd", "n?", "g")]


def test_the_store_writes_through_its_sender(pg_db: PgDatabase, tmp_path: Path) -> None:
    # records of 2023: retention would prune them as they arrive (test_background_retention_...)
    settings = Settings.resolve(
        {}, spool_dir=str(tmp_path / "spool"), retention_s="off", rollup_retention_s="off"
    )
    store = build_postgres(settings, PostgresOptions(url=pg_db.url))
    assert isinstance(store, PostgresStore)
    assert WRITER_PASSWORD not in repr(store)
    records = sample_records(1200)
    store.export(records[:700])
    store.export(records[700:])
    assert store.force_flush(20)
    store.shutdown()
    assert pg_db.count() == 1200
    assert store.sender.stats()["records_sent"] == 1200


def test_prune_removes_old_records_keeps_the_newest_and_the_rollups(pg_db: PgDatabase) -> None:
    now = T0 + 10 * 86400 * 10**9
    old = sample_records(60, "old", t0=T0)  # 10 days ago
    new = sample_records(40, "new", t0=now - 3600 * 10**9)  # the last hour
    send_all(pg_db.url, old + new).close()
    rollup_tables = ("endpoint_minutes", "consumer_minutes", "endpoint_hours", "consumer_hours")
    rollup_rows = sum(pg_db.count(table) for table in rollup_tables)
    removed = prune_postgres(pg_db.url, older_than_s=7 * 86400, now_ns=now)
    assert (removed.records, removed.rollup_rows) == (60, 0)
    assert sorted(r.record_id for r in read_records(pg_db.url)) == sorted(r.record_id for r in new)
    assert sum(pg_db.count(table) for table in rollup_tables) == rollup_rows
    assert_rollups_match(pg_db.url, old + new)  # the report still counts the pruned records
    # the rollups too, past their own age; through the stores' entry point
    removed = prune(pg_db.url, older_than_s=None, rollups_older_than_s=7 * 86400, now_ns=now)
    assert removed.records == 0
    assert removed.rollup_rows == rollup_rows - sum(pg_db.count(table) for table in rollup_tables)
    new_hours = {(r.start_time_ns // MINUTE_NS // 60,) for r in new}
    assert set(pg_db.sql("SELECT DISTINCT hour FROM endpoint_hours")) == new_hours
    assert set(pg_db.sql("SELECT DISTINCT hour FROM consumer_hours")) == new_hours
    assert_rollups_match(pg_db.url, new)
    assert_hours_match(pg_db)


def test_rollup_prune_keeps_the_hour_of_the_cutoff(pg_db: PgDatabase) -> None:
    records = sample_records(180, step_ns=60_000_000_000)  # one a minute, from minute 13
    send_all(pg_db.url, records).close()
    first_hour = T0 // MINUTE_NS // 60
    cutoff_minute = (first_hour + 1) * 60 + 30  # half way through the second hour
    now = cutoff_minute * MINUTE_NS + 86400 * 10**9
    prune_postgres(pg_db.url, older_than_s=None, rollups_older_than_s=86400, now_ns=now)
    assert pg_db.sql("SELECT min(minute) FROM endpoint_minutes") == [(cutoff_minute,)]
    assert pg_db.sql("SELECT min(hour) FROM endpoint_hours") == [(first_hour + 1,)]
    assert pg_db.sql("SELECT min(hour) FROM consumer_hours") == [(first_hour + 1,)]
    kept = [r for r in records if r.start_time_ns // MINUTE_NS >= (first_hour + 1) * 60]
    assert_rollups_match(pg_db.url, kept)  # all time reads the hours: the whole cutoff hour


def test_background_retention_prunes_after_a_batch(pg_db: PgDatabase) -> None:
    import time

    old = sample_records(30, "old", t0=time.time_ns() - 40 * 86400 * 10**9)
    send_all(pg_db.url, old).close()
    transport = PostgresTransport(pg_db.url, retention_s=30 * 86400.0, rollup_retention_s=400 * 86400.0)
    new = sample_records(5, "new", t0=time.time_ns())
    assert transport.send(next(copy_batches(new, 10, 1 << 20))).outcome == "sent"
    transport.close()
    assert sorted(r.record_id for r in read_records(pg_db.url)) == sorted(r.record_id for r in new)


# -- bad input -----------------------------------------------------------------------------


def test_redact_url_masks_every_form_of_password() -> None:
    assert redact_url("postgresql://app:s3cret@db:5432/api") == "postgresql://app:***@db:5432/api"
    assert (
        redact_url("postgres://app:p%40ss@db/api?sslmode=require")
        == "postgres://app:***@db/api?sslmode=require"
    )
    assert (
        redact_url("postgresql://db/api?user=a&password=s3cret") == "postgresql://db/api?user=a&password=***"
    )
    assert redact_url("postgresql://app:s3cret@db:54x2/api") == "postgresql://app:***@db:54x2/api"
    assert redact_url("postgresql://app@db/api") == "postgresql://app@db/api"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:s3cret-pw@db:54x2/api",
        "mysql://app:s3cret-pw@db/api",
        "postgresql://app:s3cret-pw@db/a pi",
    ],
)
def test_a_malformed_url_is_one_clear_line_without_the_password(
    url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="expected postgresql://") as raised:
        parse_postgres_url(url)
    assert "s3cret-pw" not in str(raised.value) and "app:***@" in str(raised.value)
    with pytest.raises(ValueError) as raised:  # given in code
        PostgresOptions(url=url)
    assert "s3cret-pw" not in str(raised.value)
    # from the environment: a warning, the destination is not used, nothing raises
    monkeypatch.setenv("SPANLYTICS_DESTINATIONS", "postgres")
    monkeypatch.setenv("SPANLYTICS_POSTGRES_URL", url)
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        settings = Settings.resolve()
        from spanlytics.destinations.registry import build_destinations

        assert build_destinations(settings) == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "expected postgresql://" in lines[0], lines  # one line, saying why
    assert "s3cret-pw" not in lines[0]


def test_wrong_password_pauses_with_one_line_and_spools(
    pg_db: PgDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = pg_db.server.url(pg_db.name, password="Wrong-pw-77aa")
    settings = Settings.resolve({}, spool_dir=str(tmp_path / "spool"))
    store = build_postgres(settings, PostgresOptions(url=url))
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        store.export(sample_records(10))
        store.force_flush(5)
        store.shutdown(2)
    assert isinstance(store, PostgresStore)
    stats = store.sender.stats()
    assert stats["records_sent"] == 0 and stats["batches_spooled"] >= 1 and not stats["dropped"]
    lines = [r.getMessage() for r in caplog.records if "postgres" in r.getMessage()]
    assert len(lines) == 1 and "password authentication failed" in lines[0], lines
    assert all("Wrong-pw-77aa" not in line for line in caplog.text.splitlines())
    spooled = list((tmp_path / "spool").rglob("*.batch"))
    assert spooled, "the batch waits in the spool"
    for file in (tmp_path / "spool").rglob("*"):
        if file.is_file():
            assert b"Wrong-pw-77aa" not in file.read_bytes()
    assert "Wrong-pw-77aa" not in str(tmp_path / "spool") + "".join(str(p) for p in spooled)


def test_a_role_without_permissions_pauses(pg_db: PgDatabase, caplog: pytest.LogCaptureFixture) -> None:
    url = pg_db.server.url(pg_db.name, user=STRANGER, password=STRANGER_PASSWORD)
    transport = PostgresTransport(url)
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        answer = transport.send(next(copy_batches(sample_records(3), 10, 1 << 20)))
    assert answer.outcome == "pause"
    assert "permission denied" in caplog.text and "42501" in caplog.text
    assert STRANGER_PASSWORD not in caplog.text


def test_a_missing_database_pauses_with_one_line(pg_db: PgDatabase, caplog: pytest.LogCaptureFixture) -> None:
    url = pg_db.server.url("no_such_database")
    transport = PostgresTransport(url)
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        answer = transport.send(next(copy_batches(sample_records(3), 10, 1 << 20)))
    assert answer.outcome == "pause"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "no_such_database" in lines[0] and "does not exist" in lines[0], lines
    assert WRITER_PASSWORD not in lines[0] and "writer:***@" in lines[0]


def test_a_schema_newer_than_the_code_drops_batches_with_one_line(
    pg_db: PgDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    send_all(pg_db.url, sample_records(2)).close()
    pg_db.sql("UPDATE spanlytics_schema SET version = 99")
    transport = PostgresTransport(pg_db.url)
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        answers = [transport.send(b) for b in copy_batches(sample_records(30, "x"), 10, 1 << 20)]
    assert [(a.outcome, a.dropped) for a in answers] == [("rejected", "schema_newer")] * 3
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "schema version 99 is newer" in lines[0], lines
    assert WRITER_PASSWORD not in caplog.text
    assert pg_db.count() == 2
    with PostgresReader(pg_db.url) as reader:  # readers still read the columns they know
        assert len(list(reader.records())) == 2


def test_reader_errors_are_one_line_without_the_password(pg_db: PgDatabase) -> None:
    with pytest.raises(StoreError) as raised:
        PostgresReader(pg_db.server.url(pg_db.name, password="Wrong-pw-88bb"))
    assert "password authentication failed" in str(raised.value)
    assert "Wrong-pw-88bb" not in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(StoreError, match="holds no spanlytics store"):
        PostgresReader(pg_db.url)  # nothing written yet
    with pytest.raises(StoreError) as raised:
        PostgresReader(pg_db.server.url("no_such_db"))
    assert "does not exist" in str(raised.value) and WRITER_PASSWORD not in str(raised.value)


def test_without_psycopg_one_line_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    from spanlytics.destinations.registry import build_destinations

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    env = {"SPANLYTICS_DESTINATIONS": "postgres,local", "SPANLYTICS_POSTGRES_URL": "postgresql://a:pw-x@h/d"}
    with caplog.at_level(logging.WARNING, logger="spanlytics"):
        built = build_destinations(Settings.resolve(env))
    assert [d.name for d in built] == ["postgres", "local"]
    built[0].export(sample_records(2))  # dropped, never raises
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "the postgres destination needs psycopg: pip install 'spanlytics[postgres]'; it is not used"
    ]
    for destination in built:
        destination.shutdown()


def test_a_forked_reader_sees_its_parents_snapshot(pg_db: PgDatabase) -> None:
    """The dashboard reads a page's charts on a fork while its tables are added up: both must
    see the same records, even when a batch lands in between."""
    records = sample_records(60, step_ns=37_000_000_000)
    batches = list(copy_batches(records, 30, 1 << 20))
    transport = PostgresTransport(pg_db.url)
    assert transport.send(batches[0]).outcome == "sent"
    with PostgresReader(pg_db.url) as reader:
        before = sum(r[3] for r in reader.endpoint_rollups(None))
        child = reader.fork()
        assert transport.send(batches[1]).outcome == "sent"  # committed after the snapshot
        with child:
            assert sum(r[3] for r in child.endpoint_rollups(None)) == before == 30
            assert len(child.request_page(RequestFilter(), 100)) == 30
    transport.close()
    with PostgresReader(pg_db.url) as later:
        assert sum(r[3] for r in later.endpoint_rollups(None)) == 60
