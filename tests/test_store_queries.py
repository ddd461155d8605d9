"""What the dashboard reads, the same from both stores: time series per minute and per hour,
windows with an end, the request log's filters and keyset pages, groups and single records.

Every test runs on a real SQLite file and on a real PostgreSQL database holding the same
records, and compares what the reader returns with what the records themselves say."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from spanlytics.consumer import Consumer
from spanlytics.destinations.any_store import open_reader
from spanlytics.destinations.local import LocalStore
from spanlytics.destinations.postgres.rows import copy_batches
from spanlytics.destinations.postgres.transport import PostgresTransport
from spanlytics.destinations.rollups import MINUTE_NS, Tally, parse_hist, status_class
from spanlytics.destinations.stores import RequestFilter, window_parts
from spanlytics.record import ExceptionInfo, MaskedField, RequestRecord
from tests.support.records import make_record

pytest_plugins = ["tests.support.postgres"]  # the pg_server and pg_db fixtures

T0 = 1_700_000_000 * 10**9 + 17 * MINUTE_NS  # mid-hour
STEP_NS = 23_000_000_000
N = 400  # about two and a half hours


def sample(n: int = N) -> list[RequestRecord]:
    records = []
    for i in range(n):
        consumer = None if i % 4 == 0 else Consumer(f"c{i % 3}", f"Name {i % 5}", "team-a")
        records.append(
            make_record(
                record_id=f"r{i:04d}",
                start_time_ns=T0 + i * STEP_NS - (i % 2),  # some records share a start time
                duration_ms=0.5 + (i * 37 % 900) / 3,
                method=("GET", "POST", "DELETE")[i % 3],
                route=None if i % 11 == 0 else f"/items/{{id}}/{i % 4}",
                path=f"/items/{i}/<b>{i % 7}</b>",
                status=None if i % 17 == 0 else (200, 201, 404, 500, 302)[i % 5],
                consumer=consumer,
                exception=ExceptionInfo("ValueError", "bad", "Traceback\n  line") if i % 9 == 0 else None,
                masked=(MaskedField("$.password", "password"),) if i % 5 == 0 else (),
                request_body='{"password": "[MASKED]"}',
            )
        )
    # two records at the very same time: the page order breaks the tie by id
    records.append(make_record(record_id="tie-a", start_time_ns=T0 + 5 * STEP_NS, status=200))
    records.append(make_record(record_id="tie-b", start_time_ns=T0 + 5 * STEP_NS, status=200))
    return records


RECORDS = sample()


def _write_local(path: Path) -> str:
    store = LocalStore(path, retention_s=None, rollup_retention_s=None)
    store.export(RECORDS)
    store.shutdown()
    assert store.dropped == 0
    return str(path)


def _write_postgres(url: str) -> str:
    transport = PostgresTransport(url)
    for batch in copy_batches(RECORDS, 60, 1 << 20):
        assert transport.send(batch).outcome == "sent"
    transport.close()
    return url


@pytest.fixture(params=["local", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "local":
        yield _write_local(tmp_path / "spanlytics.db")
    else:
        yield _write_postgres(request.getfixturevalue("pg_db").url)


def expected_series(
    keep: Callable[[RequestRecord], bool], from_minute: int, until_minute: int, per_hour: bool
) -> dict[tuple[int, int], Tally]:
    if per_hour:
        from_minute, until_minute = from_minute // 60 * 60, -(-until_minute // 60) * 60
    series: dict[tuple[int, int], Tally] = {}
    for r in RECORDS:
        minute = r.start_time_ns // MINUTE_NS
        if keep(r) and from_minute <= minute < until_minute:
            bucket = minute // 60 if per_hour else minute
            series.setdefault((bucket, status_class(r.status)), Tally()).add(
                r.status, r.duration_ms, r.request_size, r.response_size
            )
    return series


def as_tallies(rows: Any) -> dict[tuple[int, int], Tally]:
    got = {}
    for row in rows:
        tally = Tally(*row[2:-1])
        tally.hist = parse_hist(row[-1])
        got[(row[0], row[1])] = tally
    return got


def same(got: dict[Any, Tally], expected: dict[Any, Tally]) -> None:
    assert got.keys() == expected.keys()
    for key, tally in expected.items():
        assert got[key].duration_ms_sum == pytest.approx(tally.duration_ms_sum)
        got[key].duration_ms_sum = tally.duration_ms_sum
        assert got[key] == tally, key


FIRST = T0 // MINUTE_NS
LAST = (T0 + N * STEP_NS) // MINUTE_NS + 1


@pytest.mark.parametrize("per_hour", [False, True])
@pytest.mark.parametrize("window", [(FIRST, LAST), (FIRST + 7, FIRST + 95), (FIRST + 50, FIRST + 51)])
def test_series_equal_the_records_per_bucket(db: str, window: tuple[int, int], per_hour: bool) -> None:
    start, end = window
    with open_reader(db) as reader:
        everything = list(reader.endpoint_series(start, end, per_hour=per_hour))
        one = reader.endpoint_series(start, end, per_hour=per_hour, endpoint=("GET", "/items/{id}/0"))
        unmatched = reader.endpoint_series(start, end, per_hour=per_hour, endpoint=("GET", None))
        consumer = reader.consumer_series(start, end, "c1", per_hour=per_hour)
        nobody = reader.consumer_series(start, end, None, per_hour=per_hour)
    assert [row[0] for row in everything] == sorted(row[0] for row in everything)
    same(as_tallies(everything), expected_series(lambda r: True, start, end, per_hour))
    same(
        as_tallies(one),
        expected_series(lambda r: (r.method, r.route) == ("GET", "/items/{id}/0"), start, end, per_hour),
    )
    same(
        as_tallies(unmatched),
        expected_series(lambda r: r.method == "GET" and r.route is None, start, end, per_hour),
    )
    same(
        as_tallies(consumer),
        expected_series(
            lambda r: r.consumer is not None and r.consumer.identifier == "c1", start, end, per_hour
        ),
    )
    same(as_tallies(nobody), expected_series(lambda r: r.consumer is None, start, end, per_hour))
    assert everything or end - start == 1


def test_window_parts_cover_the_window_once() -> None:
    for start in range(0, 200, 7):
        for end in (*range(start, 260, 11), None):
            minutes, (h0, h1) = window_parts(start, end)
            covered = [m for a, b in minutes for m in range(a, b)]
            covered += [m for h in range(h0, min(h1, 10)) for m in range(h * 60, h * 60 + 60)]
            stop = 600 if end is None else end
            assert sorted(m for m in covered if m < stop) == list(range(start, stop))


@pytest.mark.parametrize("window", [(FIRST + 3, FIRST + 130), (FIRST + 43, FIRST + 60), (None, FIRST + 61)])
def test_rollups_of_a_window_with_an_end(db: str, window: tuple[int | None, int]) -> None:
    start, end = window
    expected: dict[Any, Tally] = {}
    for r in RECORDS:
        minute = r.start_time_ns // MINUTE_NS
        if (start is None or minute >= start) and minute < end:
            key = (r.method, r.route, status_class(r.status))
            expected.setdefault(key, Tally()).add(r.status, r.duration_ms, r.request_size, r.response_size)
    with open_reader(db) as reader:
        rows = list(reader.endpoint_rollups(start, end))
        consumers = list(reader.consumer_rollups(start, end))
    got = {}
    for row in rows:
        tally = Tally(*row[3:-1])
        tally.hist = parse_hist(row[-1])
        got[tuple(row[:3])] = tally
    same(got, expected)
    assert sum(row[2] for row in consumers) == sum(t.count for t in expected.values())


FILTERS = [
    RequestFilter(),
    RequestFilter(since_ns=T0 + 30 * STEP_NS, until_ns=T0 + 200 * STEP_NS),
    RequestFilter(method="POST"),
    RequestFilter(route="/items/{id}/2"),
    RequestFilter(route=""),
    RequestFilter(status=404),
    RequestFilter(status_class=5),
    RequestFilter(status_class=0),
    RequestFilter(consumer_id="c2"),
    RequestFilter(consumer_id=""),
    RequestFilter(min_duration_ms=150.0),
    RequestFilter(path_contains="<b>3"),
    RequestFilter(path_contains="%"),  # no wildcard: a plain substring
    RequestFilter(failed=True, method="GET"),
]


def selected(f: RequestFilter, r: RequestRecord) -> bool:
    cid = None if r.consumer is None else r.consumer.identifier
    return (
        (f.since_ns is None or r.start_time_ns >= f.since_ns)
        and (f.until_ns is None or r.start_time_ns < f.until_ns)
        and (f.method is None or r.method == f.method)
        and (f.route is None or r.route == (f.route or None))
        and (f.status is None or r.status == f.status)
        and (f.status_class is None or status_class(r.status) == f.status_class)
        and (f.consumer_id is None or cid == (f.consumer_id or None))
        and (f.min_duration_ms is None or r.duration_ms >= f.min_duration_ms)
        and (not f.path_contains or f.path_contains in r.path)
        and (not f.failed or r.status is None or r.status >= 500)
    )


@pytest.mark.parametrize("where", FILTERS, ids=repr)
def test_keyset_pages_walk_the_filtered_log_newest_first(db: str, where: RequestFilter) -> None:
    expected = sorted(
        (r for r in RECORDS if selected(where, r)), key=lambda r: (r.start_time_ns, r.record_id), reverse=True
    )
    pages = []
    with open_reader(db) as reader:
        before = None
        while True:
            page = reader.request_page(where, 37, before)
            assert len(page) <= 37
            if not page:
                break
            pages.append(page)
            before = (page[-1][1], page[-1][0])
        slowest = reader.request_page(where, 5, slowest=True)
    rows = [row for page in pages for row in page]
    assert [row[0] for row in rows] == [r.record_id for r in expected]
    if where == RequestFilter():
        assert len(pages) == -(-len(RECORDS) // 37)
    for row, r in zip(rows, expected, strict=True):
        assert row[1:] == (
            r.start_time_ns,
            r.method,
            r.route,
            r.path,
            r.status,
            r.duration_ms,
            None if r.consumer is None else r.consumer.identifier,
            None if r.consumer is None else r.consumer.name,
            None if r.exception is None else r.exception.type,
        )
    assert [row[6] for row in slowest] == sorted((r.duration_ms for r in expected), reverse=True)[:5]


@pytest.mark.parametrize("by", ["endpoint", "consumer", "status"])
def test_groups_add_up_the_selected_records(db: str, by: str) -> None:
    where = RequestFilter(since_ns=T0 + 10 * STEP_NS, until_ns=T0 + 300 * STEP_NS)
    expected: dict[tuple[Any, Any], list[float]] = {}
    for r in RECORDS:
        if selected(where, r):
            if by == "endpoint":
                key: tuple[Any, Any] = (r.method, r.route)
            elif by == "consumer":
                key = (None if r.consumer is None else r.consumer.identifier, None)
            else:
                key = (r.status, None)
            e = expected.setdefault(key, [0, 0, 0, 0.0, 0.0])
            e[0] += 1
            e[1] += r.status is not None and r.status >= 400
            e[2] += r.status is None or r.status >= 500
            e[3] += r.duration_ms
            e[4] = max(e[4], r.duration_ms)
    with open_reader(db) as reader:
        rows = list(reader.request_groups(by, where))
        top = list(reader.request_groups(by, where, limit=2))
    got = {(row[0], row[1]): [row[2], row[3], row[4], pytest.approx(row[5]), row[6]] for row in rows}
    assert got == expected
    assert [row[2] for row in rows] == sorted((row[2] for row in rows), reverse=True)
    assert top == rows[:2]


@pytest.mark.parametrize("sample", [1, 60, 10_000])
def test_a_sample_reads_the_newest_records_of_the_window(db: str, sample: int) -> None:
    window = RequestFilter(since_ns=T0 + 10 * STEP_NS, until_ns=T0 + 300 * STEP_NS)
    newest = sorted(
        (r for r in RECORDS if selected(window, r)),
        key=lambda r: (r.start_time_ns, r.record_id),
        reverse=True,
    )[:sample]
    where = RequestFilter(since_ns=window.since_ns, until_ns=window.until_ns, method="GET")
    with open_reader(db) as reader:
        groups = list(reader.request_groups("status", where, sample=sample))
        slowest = reader.request_page(where, 3, slowest=True, sample=sample)
    gets = [r for r in newest if r.method == "GET"]
    assert sum(row[2] for row in groups) == len(gets)
    assert [row[6] for row in slowest] == sorted((r.duration_ms for r in gets), reverse=True)[:3]


@pytest.mark.parametrize("where", FILTERS, ids=repr)
def test_bounded_reads_walk_the_whole_filtered_log(db: str, where: RequestFilter) -> None:
    """Pages that each read down to the scan floor of 23 records (their window's start raised
    to it), going on from there when they are not full, find every selected record exactly
    once, newest first."""
    expected = sorted(
        (r for r in RECORDS if selected(where, r)), key=lambda r: (r.start_time_ns, r.record_id), reverse=True
    )
    found, floors = [], 0
    with open_reader(db) as reader:
        before = None
        while True:
            floor = reader.scan_floor(where, 23, before)
            narrowed = (
                where if floor is None else replace(where, since_ns=max(where.since_ns or floor, floor))
            )
            page = reader.request_page(narrowed, 5, before)
            found.extend(row[0] for row in page)
            if len(page) == 5:
                before = (page[-1][1], page[-1][0])
            elif floor is not None:
                floors += 1
                before = (floor, "")
            else:
                break
    assert found == [r.record_id for r in expected]
    window = [
        r for r in RECORDS if selected(RequestFilter(since_ns=where.since_ns, until_ns=where.until_ns), r)
    ]
    if not expected:  # every read stopped at its floor, 23 records further each time
        assert len(window) // 23 - 1 <= floors <= len(window) // 23


def test_the_scan_floor_is_the_start_of_the_nth_newest_record(db: str) -> None:
    window = RequestFilter(since_ns=T0 + 10 * STEP_NS, until_ns=T0 + 300 * STEP_NS)
    newest = sorted((r.start_time_ns for r in RECORDS if selected(window, r)), reverse=True)
    with open_reader(db) as reader:
        assert reader.scan_floor(window, 10) == newest[9]
        cursor = (newest[9], "")  # the records before that start
        older = [ns for ns in newest if ns < newest[9]]
        assert reader.scan_floor(window, 10, cursor) == older[9]
        assert reader.scan_floor(window, len(newest)) == newest[-1]
        assert reader.scan_floor(window, len(newest) + 1) is None
        assert reader.scan_floor(RequestFilter(), len(RECORDS) + 1) is None


@pytest.mark.parametrize("kind", ["endpoint", "consumer"])
def test_top_keeps_the_histograms_of_the_busiest(db: str, kind: str) -> None:
    """With ``top``, the busiest groups' rows are the full rows; others may lose only their
    histogram."""
    with open_reader(db) as reader:
        read = reader.endpoint_rollups if kind == "endpoint" else reader.consumer_rollups
        width = 2 if kind == "endpoint" else 1
        full = list(read(None))
        top = list(read(None, top=2))
    totals: dict[tuple[Any, ...], int] = {}
    for row in full:
        totals[row[:width]] = totals.get(row[:width], 0) + row[width + 1]
    busiest = sorted(totals, key=lambda k: (-totals[k], *("" if v is None else v for v in k)))[:2]
    assert len(top) == len(full)
    for a, b in zip(full, top, strict=True):
        if a[:width] in busiest:
            assert a == b
        else:
            assert a[:-1] == b[:-1] and b[-1] in (a[-1], {}, "{}")


def test_one_record_by_id(db: str) -> None:
    with open_reader(db) as reader:
        assert reader.record("r0009") == RECORDS[9]
        assert reader.record("tie-b") == RECORDS[-1]
        assert reader.record("no-such-id") is None
        assert reader.record("' OR 1=1 --") is None
