"""``spanlytics report``'s engine: aggregation over a real SQLite file, percentiles, tables."""

from __future__ import annotations

import json
import math
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanlytics.consumer import Consumer
from spanlytics.destinations.local import LocalReader, LocalStore, SchemaError
from spanlytics.destinations.rollups import ERROR_BOUND, MINUTE_NS
from spanlytics.record import RequestRecord
from spanlytics.report import (
    MAX_SINCE_S,
    build_report,
    format_report,
    parse_duration,
    percentile,
)

NOW_NS = 1_700_000_000_000_000_000
SECOND_NS = 1_000_000_000


def make_record(n: int, **overrides: object) -> RequestRecord:
    fields: dict[str, object] = {
        "record_id": f"r-{n}",
        "trace_id": f"{n:032x}",
        "span_id": f"{n:016x}",
        "start_time_ns": NOW_NS - 10 * SECOND_NS,
        "duration_ms": 1.0,
        "method": "GET",
        "route": "/items/{item_id}",
        "path": "/items/1",
        "url": "http://api.test/items/1",
        "query": "",
        "status": 200,
    }
    fields.update(overrides)
    return RequestRecord(**fields)  # type: ignore[arg-type]


def write(path: Path, records: list[RequestRecord]) -> Path:
    store = LocalStore(path, retention_s=None, rollup_retention_s=None)  # records of November 2023
    store.export(records)
    store.shutdown()
    assert store.dropped == 0
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """100 GETs with durations 1..100 ms (inserted shuffled), 3 POSTs, 2 unmatched requests."""
    durations = list(range(1, 101))
    random.Random(7).shuffle(durations)
    records = []
    for n, ms in enumerate(durations):
        status = 404 if ms <= 10 else 500 if ms == 100 else 200
        records.append(
            make_record(n, duration_ms=float(ms), status=status, request_size=0, response_size=ms * 10)
        )
    acme = Consumer("acme", name="Acme", group="free")
    records += [
        make_record(200, method="POST", route="/orders", duration_ms=5.0, status=201, request_size=100,
                    consumer=Consumer("acme"), start_time_ns=NOW_NS - 30 * SECOND_NS),
        make_record(201, method="POST", route="/orders", duration_ms=7.0, status=None, request_size=300,
                    consumer=acme, start_time_ns=NOW_NS - 20 * SECOND_NS),
        make_record(202, method="POST", route="/orders", duration_ms=6.0, status=503,
                    consumer=Consumer("acme", group="enterprise"), start_time_ns=NOW_NS - 10 * SECOND_NS),
        make_record(300, route=None, path="/nope", duration_ms=0.5, status=404,
                    consumer=Consumer("zed", name="Zed"), start_time_ns=NOW_NS - 3600 * SECOND_NS),
        make_record(301, route=None, path="/nada", duration_ms=0.25, status=404,
                    start_time_ns=NOW_NS - 3600 * SECOND_NS),
    ]  # fmt: skip
    return write(tmp_path / "spanlytics.db", records)


def close_to(reported: float | None, values: list[float], pct: int) -> bool:
    """Within ERROR_BOUND (relatively) of the exact nearest-rank percentile of ``values``."""
    exact = percentile(sorted(values), pct)
    assert reported is not None and exact is not None
    return abs(reported - exact) <= ERROR_BOUND * exact * (1 + 1e-9)


def test_endpoints_with_exact_values(db: Path) -> None:
    report = build_report(db, now_ns=NOW_NS)
    assert report["total"] == 105
    assert report["since"] is None
    items, orders, unmatched = report["endpoints"]
    for entry, durations in ((items, [float(ms) for ms in range(1, 101)]), (orders, [5.0, 7.0, 6.0])):
        for pct in (50, 95, 99):
            assert close_to(entry.pop(f"p{pct}_ms"), durations, pct), (entry, pct)
    assert close_to(unmatched["p50_ms"], [0.5, 0.25], 50)
    assert items == {
        "method": "GET",
        "route": "/items/{item_id}",
        "unmatched": False,
        "count": 100,
        "error_count": 11,  # ten 404s and one 500
        "server_error_count": 1,
        "error_rate": 0.11,
        "mean_request_size": 0.0,
        "mean_response_size": 505.0,  # mean of 10..1000 in steps of 10
    }
    assert orders["route"] == "/orders" and orders["count"] == 3
    # 503 and the crashed request (no status) are server errors; only the 503 is >= 400.
    assert (orders["error_count"], orders["server_error_count"]) == (1, 2)
    assert orders["mean_request_size"] == 200.0  # the 503 has no size: not counted as zero
    assert orders["mean_response_size"] is None
    assert unmatched["route"] is None and unmatched["unmatched"] is True
    assert (unmatched["count"], unmatched["error_count"]) == (2, 2)


def test_consumers(db: Path) -> None:
    consumers = build_report(db, now_ns=NOW_NS)["consumers"]
    acme = consumers[1]
    for pct in (50, 95, 99):
        assert close_to(acme[f"p{pct}_ms"], [5.0, 7.0, 6.0], pct)
    assert (acme["mean_request_size"], acme["mean_response_size"]) == (200.0, None)
    keys = ("consumer_id", "name", "group", "count", "error_count", "server_error_count")
    assert [{k: c[k] for k in keys} for c in consumers] == [
        {"consumer_id": None, "name": None, "group": None, "count": 101, "error_count": 12,
         "server_error_count": 1},
        {"consumer_id": "acme", "name": "Acme", "group": "enterprise", "count": 3, "error_count": 1,
         "server_error_count": 2},
        {"consumer_id": "zed", "name": "Zed", "group": None, "count": 1, "error_count": 1,
         "server_error_count": 0},
    ]  # fmt: skip


def test_since_keeps_only_recent_requests(db: Path) -> None:
    report = build_report(db, since_s=25, now_ns=NOW_NS)
    assert report["total"] == 102  # the 100 GETs at -10 s, POSTs at -20 s and -10 s
    assert report["since"] == {
        "seconds": 25,
        "start_time_ns": NOW_NS - 25 * SECOND_NS,
        "start": "2023-11-14T22:12:55Z",
    }
    assert [(e["method"], e["count"]) for e in report["endpoints"]] == [("GET", 100), ("POST", 2)]
    acme = next(c for c in report["consumers"] if c["consumer_id"] == "acme")
    assert (acme["count"], acme["name"], acme["group"]) == (2, "Acme", "enterprise")
    assert build_report(db, since_s=1, now_ns=NOW_NS)["total"] == 0


def test_report_is_json_serialisable(db: Path) -> None:
    report = build_report(db)
    assert json.loads(json.dumps(report)) == report


def test_missing_database(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.db"
    with pytest.raises(FileNotFoundError, match=re.escape(f"no spanlytics database at {missing}")):
        build_report(missing)
    assert not missing.exists()


def test_not_a_spanlytics_database(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    text = tmp_path / "notes.txt"
    text.write_text("not sqlite at all" * 100)
    for path in (other, text):
        with pytest.raises(SchemaError, match="not a spanlytics database"):
            build_report(path)


# --- percentiles -----------------------------------------------------------------------------


def nearest_rank(values: list[float], pct: int) -> float:
    """The textbook definition: the smallest value with at least pct% of values <= it."""
    return next(v for v in values if sum(x <= v for x in values) * 100 >= pct * len(values))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 19, 20, 21, 99, 100, 101, 1000])
@pytest.mark.parametrize("pct", [50, 95, 99])
def test_percentile_matches_nearest_rank_definition(n: int, pct: int) -> None:
    values = sorted(float(v) for v in range(1, n + 1))
    assert percentile(values, pct) == nearest_rank(values, pct) == values[math.ceil(pct * n / 100) - 1]


def test_percentile_small_inputs() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    assert [percentile([10.0, 20.0], p) for p in (50, 95, 99)] == [10.0, 20.0, 20.0]


# --- parse_duration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800), ("90", 90),
     ("1.5h", 5400), (" 15M ", 900)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "15x", "-5m", "0", "0s", "1h30m", "15 minutes", "nan", "1e3"])
def test_parse_duration_rejects_junk(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


# --- text tables -----------------------------------------------------------------------------


def table(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_format_report_tables(db: Path) -> None:
    report = build_report(db, now_ns=NOW_NS)
    text = format_report(report)
    assert text.splitlines()[0] == "105 requests (all time)"
    endpoints = table(text, "Endpoints")
    assert cells(endpoints[0]) == [
        "METHOD", "ROUTE", "COUNT", "ERR %", "P50 MS", "P95 MS", "P99 MS", "REQ B", "RESP B",
    ]  # fmt: skip
    items = report["endpoints"][0]
    shown = [f"{items[f'p{pct}_ms']:,.1f}" for pct in (50, 95, 99)]
    assert endpoints[2].split() == ["GET", "/items/{item_id}", "100", "11.0", *shown, "0", "505"]
    for value, pct in zip(shown, (50, 95, 99), strict=True):
        assert abs(float(value) - pct) <= pct * ERROR_BOUND + 0.05
    assert endpoints[4].split()[:4] == ["GET", "(unmatched)", "2", "100.0"]
    assert endpoints[4].split()[-2:] == ["-", "-"]
    assert len({len(line) for line in endpoints}) == 1  # numbers are right-aligned in columns
    consumers = table(text, "Consumers")
    assert cells(consumers[0]) == [
        "CONSUMER", "NAME", "GROUP", "COUNT", "ERRORS", "5XX",
        "P50 MS", "P95 MS", "P99 MS", "REQ B", "RESP B",
    ]  # fmt: skip
    assert consumers[2].split()[:6] == ["(none)", "-", "-", "101", "12", "1"]
    assert consumers[3].split()[:6] == ["acme", "Acme", "enterprise", "3", "1", "2"]
    assert consumers[3].split()[-2:] == ["200", "-"]
    assert len({len(line) for line in consumers}) == 1


def test_format_report_since_and_empty(db: Path) -> None:
    text = format_report(build_report(db, since_s=1, now_ns=NOW_NS))
    assert text.splitlines() == ["0 requests (since 2023-11-14T22:13:19Z)", "", "No requests recorded."]


def test_format_report_keeps_terminal_control_codes_out(tmp_path: Path) -> None:
    evil = Consumer("x\x1b[2J", name="\x1b[31mred\x1b[0m", group="g" * 200)
    path = write(tmp_path / "evil.db", [make_record(1, consumer=evil, route="/a\r\nb")])
    text = format_report(build_report(path))
    assert "\x1b" not in text and "\r" not in text
    assert "?[31mred?[0m" in text
    assert "g" * 59 + "…" in text and "g" * 60 not in text


# --- the --since window: validation and the start-time index ---------------------------------


@pytest.mark.parametrize("text", ["", " ", "99999999999999999999999d", "36501d", "9" * 400, "5300w"])
def test_parse_duration_rejects_empty_and_absurd_windows(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_the_longest_window_is_a_hundred_years(db: Path) -> None:
    assert parse_duration("36500d") == MAX_SINCE_S
    report = build_report(db, since_s=MAX_SINCE_S, now_ns=NOW_NS)
    assert report["total"] == 105 and report["since"]["start"].startswith("1923-")


@pytest.mark.parametrize("since_s", [1e300, math.inf, math.nan, 0.0, -5.0, MAX_SINCE_S * 1.01])
def test_build_report_rejects_windows_it_cannot_compute(db: Path, since_s: float) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        build_report(db, since_s=since_s, now_ns=NOW_NS)


def query_plans(db: Path, run: Any) -> str:
    """The plans of every statement ``run(reader)`` executes on a LocalReader."""
    plans: list[str] = []
    with LocalReader(db) as reader:
        conn = reader._conn
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        run(reader)
        conn.set_trace_callback(None)
        for sql in statements:
            if sql.startswith("SELECT"):
                plans += [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    return "\n".join(plans)


def test_a_window_is_searched_through_indexes(db: Path) -> None:
    since_ns = NOW_NS - 3600 * SECOND_NS + 1
    minute = -(-since_ns // MINUTE_NS)
    plan = query_plans(db, lambda r: list(r.raw_rows(since_ns, minute * MINUTE_NS)))
    assert "SEARCH requests USING INDEX requests_start_time (start_time_ns>? AND start_time_ns<?)" in plan
    plan = query_plans(db, lambda r: (r.endpoint_rollups(minute), r.consumer_rollups(minute)))
    for table in ("endpoint_minutes", "consumer_minutes"):  # the minutes of the first, partial hour
        assert f"SEARCH {table} USING PRIMARY KEY (minute>? AND minute<?)" in plan, plan
    for table in ("endpoint_hours", "consumer_hours"):
        assert f"SEARCH {table} USING PRIMARY KEY (hour>?)" in plan, plan
    assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), plan


def test_the_window_is_exact(db: Path) -> None:
    for since_s in (15, 25, 3601, MAX_SINCE_S):
        report = build_report(db, since_s=since_s, now_ns=NOW_NS)
        since_ns = report["since"]["start_time_ns"]
        with sqlite3.connect(db) as conn:
            (expected,) = conn.execute(
                "SELECT count(*) FROM requests NOT INDEXED WHERE start_time_ns >= ?", (since_ns,)
            ).fetchone()
        assert report["total"] == expected
        assert sum(c["count"] for c in report["consumers"]) == expected


def test_a_record_at_the_window_edge_is_counted_and_one_just_before_is_not(tmp_path: Path) -> None:
    minute_start = (NOW_NS // MINUTE_NS - 5) * MINUTE_NS
    since_ns = minute_start + 20 * SECOND_NS  # inside a minute: the partial minute is read raw
    at, before = since_ns, since_ns - 1
    later = [minute_start + MINUTE_NS * k + 7 for k in range(1, 5)]  # whole minutes after it
    records = [make_record(1, start_time_ns=at), make_record(2, start_time_ns=before)]
    records += [make_record(10 + k, start_time_ns=t) for k, t in enumerate(later)]
    records.append(make_record(3, start_time_ns=minute_start + 5))  # same minute, before the window
    db = write(tmp_path / "edge.db", records)
    report = build_report(db, since_s=(NOW_NS - since_ns) / 1e9, now_ns=NOW_NS)
    assert report["since"]["start_time_ns"] == since_ns
    assert report["total"] == 1 + len(later)
    assert build_report(db, since_s=(NOW_NS - before) / 1e9, now_ns=NOW_NS)["total"] == 2 + len(later)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(min_value=0.001, max_value=120_000.0), min_size=1, max_size=300))
def test_percentiles_are_within_the_bound_of_nearest_rank(durations: list[float]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        records = [
            make_record(n, duration_ms=ms, start_time_ns=NOW_NS - (n % 180) * SECOND_NS)
            for n, ms in enumerate(durations)
        ]
        (entry,) = build_report(write(Path(tmp) / "p.db", records), now_ns=NOW_NS)["endpoints"]
        assert entry["count"] == len(durations)
        for pct in (50, 95, 99):
            assert close_to(entry[f"p{pct}_ms"], durations, pct), (pct, sorted(durations))
