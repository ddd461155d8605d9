"""The dashboard without a browser: its URL parameters, charts and bind rule as plain values,
and ``spanlytics dashboard`` served by uvicorn over a real store (security headers, the
token, the host check, errors), plus ``spanlytics report --html``.

The browser's view of it is tests/test_dashboard_browser.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from spanlytics.dashboard.charts import bar_chart, line_chart
from spanlytics.dashboard.params import PRESETS, log_filter, parse_cursor, parse_window, url
from spanlytics.dashboard.serve import bind_problem, is_loopback
from spanlytics.dashboard.views import trace_link
from spanlytics.destinations.rollups import MINUTE_NS
from spanlytics.destinations.stores import RequestFilter
from tests.support.dashboard import (
    BODY_INJECTION,
    CONSUMER_INJECTION,
    SECRETS,
    FilledStore,
    start_dashboard,
)
from tests.support.servers import ServerProcess

pytest_plugins = ["tests.support.dashboard"]  # the store and dashboard fixtures (one each per run)

NOW = 1_800_000_000 * 10**9
TOKEN = "t0ken-for-the-dashboard-tests-8d1f"


def test_windows_presets_and_custom() -> None:
    for name, seconds in PRESETS.items():
        window = parse_window({"range": name}, NOW)
        assert (window.since_ns, window.until_ns, window.query()) == (
            NOW - seconds * 10**9,
            NOW,
            {"range": name},
        )
    assert parse_window({}, NOW).preset == "1h"
    assert not parse_window({"range": "1h"}, NOW).per_hour and parse_window({"range": "24h"}, NOW).per_hour
    custom = parse_window({"from": "2026-12-01T10:00", "to": "2026-12-01T12:30"}, NOW)
    assert custom.preset is None and custom.query() == {"from": "2026-12-01T10:00", "to": "2026-12-01T12:30"}
    assert (custom.until_ns - custom.since_ns) == 150 * MINUTE_NS
    assert len(custom.buckets) == 150 and not custom.per_hour
    for bad in (
        {"range": "2h"},
        {"from": "yesterday"},
        {"from": "2026-12-01T10:00", "to": "2026-12-01T09:00"},
    ):
        with pytest.raises(ValueError):
            parse_window(bad, NOW)


def test_log_filters_from_the_query_string() -> None:
    window = parse_window({"range": "15m"}, NOW)
    f = log_filter(
        {"method": "post", "status": "5xx", "min_ms": "12.5", "path": "<x>", "consumer": "acme"}, window
    )
    assert f == RequestFilter(
        since_ns=window.since_ns,
        until_ns=NOW,
        method="POST",
        status_class=5,
        min_duration_ms=12.5,
        path_contains="<x>",
        consumer_id="acme",
    )
    assert log_filter({"status": "404", "unmatched": "1", "anonymous": "1"}, window).status == 404
    assert log_filter({"unmatched": "1"}, window).route == ""
    assert log_filter({"status": "none"}, window).status_class == 0
    for bad in (
        {"method": "GET; DROP"},
        {"status": "6xx"},
        {"min_ms": "-1"},
        {"min_ms": "nan"},
        {"path": "x" * 301},
    ):
        with pytest.raises(ValueError):
            log_filter(bad, window)
    assert parse_cursor("123.abc.def") == (123, "abc.def")
    assert parse_cursor(None) is None
    for bad in ("abc", "1x.2", "123"):
        with pytest.raises(ValueError):
            parse_cursor(bad)
    assert url("/requests", {"route": "/a?b=c&d", "x": None}) == "/requests?route=%2Fa%3Fb%3Dc%26d"


def test_charts_escape_their_labels_and_count_their_points() -> None:
    svg = bar_chart(["<a>", "b"], [("<script>", "c2", [1, 0]), ("5xx", "c5", [0, 3])], "T<i>")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<a>" not in svg
    assert 'data-points="2"' in svg
    line = line_chart(["a", "b", "c"], [("p50", "p50", [1.0, None, 2.0])], "Latency", " ms")
    assert 'data-points="2"' in line and "<polyline" not in line  # a None breaks the line
    assert 'data-points="0"' in bar_chart([], [], "empty")


def test_the_bind_rule() -> None:
    assert bind_problem("127.0.0.1", None) is None
    assert bind_problem("localhost", None) is None
    assert bind_problem("::1", None) is None
    assert "without a token" in (bind_problem("0.0.0.0", None) or "")
    assert "without a token" in (bind_problem("dashboard.internal", None) or "")
    assert bind_problem("0.0.0.0", TOKEN) is None
    assert "too short" in (bind_problem("0.0.0.0", "short") or "")
    assert is_loopback("127.0.0.2") and not is_loopback("10.0.0.1")


def test_trace_links_only_for_http_templates_and_hex_ids() -> None:
    template = "https://jaeger.example/trace/{trace_id}"
    assert trace_link(template, "ab" * 16) == "https://jaeger.example/trace/" + "ab" * 16
    assert trace_link(template, '"><script>') is None
    assert trace_link("javascript:alert(1)//{trace_id}", "ab" * 16) is None
    assert trace_link(None, "ab" * 16) is None


def test_the_command_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPANLYTICS_DASHBOARD_TOKEN"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spanlytics.cli",
            "dashboard",
            "--db",
            str(tmp_path / "x.db"),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "without a token" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "spanlytics.cli", "dashboard", "--db", str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert missing.returncode == 1 and "no spanlytics database" in missing.stderr


@pytest.fixture(scope="module")
def guarded_board(store: FilledStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_dashboard(
        str(store.db), tmp_path_factory.mktemp("guarded"), env={"SPANLYTICS_DASHBOARD_TOKEN": TOKEN}
    )
    yield server
    server.stop()


PAGES = ("/", "/?range=7d", "/requests", "/requests?status=4xx", "/endpoint?method=GET&route=/boom",
         "/consumer?id=acme", "/consumer?anonymous=1", "/endpoint?method=GET&unmatched=1")  # fmt: skip


def test_every_response_carries_the_security_headers(dashboard: ServerProcess) -> None:
    for path in (*PAGES, "/static/dashboard.js", "/requests/no-such-id", "/?range=nope"):
        response = requests.get(dashboard.base_url + path, timeout=30)
        assert response.status_code in (200, 400, 404), path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        if response.headers["content-type"].startswith("text/html"):
            text = response.text
            assert "<script>" not in text.replace("<script src=", "")  # no inline script
            assert " style=" not in text and "<style" not in text
            assert CONSUMER_INJECTION not in text and BODY_INJECTION not in text
            for secret in SECRETS:
                assert secret not in text


def test_invalid_parameters_and_missing_records_are_pages_not_errors(dashboard: ServerProcess) -> None:
    assert requests.get(dashboard.base_url + "/?range=nope", timeout=30).status_code == 400
    assert requests.get(dashboard.base_url + "/requests?before=zzz", timeout=30).status_code == 400
    missing = requests.get(dashboard.base_url + "/requests/<b>gone</b>", timeout=30)
    assert missing.status_code == 404 and "<b>gone" not in missing.text


def test_a_foreign_host_name_is_refused(dashboard: ServerProcess) -> None:
    """DNS rebinding: a page of evil.example that resolves to 127.0.0.1 gets nothing."""
    response = requests.get(dashboard.base_url + "/", headers={"Host": "evil.example"}, timeout=30)
    assert response.status_code == 400
    assert requests.get(f"http://localhost:{dashboard.port}/", timeout=30).status_code == 200


def test_the_token_is_checked_on_every_request(guarded_board: ServerProcess) -> None:
    base = guarded_board.base_url
    for path in ("/", "/requests", "/static/dashboard.css", "/requests/x"):
        assert requests.get(base + path, timeout=30).status_code == 401
        assert (
            requests.get(base + path, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code
            == 401
        )
    assert (
        requests.get(base + "/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).status_code == 200
    )
    session = requests.Session()
    opened = session.get(f"{base}/requests?range=15m&token={TOKEN}", timeout=30, allow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/requests?range=15m"
    cookie = opened.headers["set-cookie"]
    assert (
        "HttpOnly" in cookie
        and "SameSite=strict" in cookie.replace("Strict", "strict")
        and TOKEN not in cookie
    )
    assert session.get(base + "/requests", timeout=30).status_code == 200  # the cookie does
    assert requests.get(base + "/", headers={"Host": "dashboard.example"}, timeout=30).status_code == 401
    assert TOKEN not in guarded_board.log()


def test_report_html_is_one_self_contained_escaped_file(store: FilledStore, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spanlytics.cli",
            "report",
            "--db",
            str(store.db),
            "--since",
            "1h",
            "--html",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    assert "<svg" in html and re.search(r'data-points="[1-9]', html)
    assert (
        "<script" not in html and "<link" not in html and "<img" not in html
    )  # nothing fetched, nothing run
    assert CONSUMER_INJECTION not in html and "&lt;img src=x onerror=window.__pwned=4&gt;" in html
    assert f"{store.stored:,}" in html
    for secret in SECRETS:
        assert secret not in html


def test_the_log_searches_on_where_a_bounded_read_stopped(store: FilledStore) -> None:
    """A page reads at most ``scan`` records: when a rare filter fills no page there, the page
    says how far it searched and its "search older" cursor goes on from there, until every match
    of the window has been shown once."""
    from spanlytics.dashboard.views import request_log
    from spanlytics.destinations.any_store import open_reader

    where = RequestFilter(path_contains="/boom")
    with open_reader(str(store.db)) as reader:
        everything = [row[0] for row in reader.request_page(where, store.stored + 1)]
        assert 3 <= len(everything) < store.stored // 4
        shown, searched, before = [], 0, None
        while True:
            page = request_log(reader, where, before, limit=4, scan=20)
            shown.extend(row["id"] for row in page["rows"])
            searched += page["searched"] is not None
            if page["next"] is None:
                break
            before = parse_cursor(page["next"])
    assert shown == everything
    assert searched >= 2  # pages that stopped at the bound, not at a full page
