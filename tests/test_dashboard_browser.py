"""The dashboard in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, which scripts/test.sh installs) through Selenium, against
``spanlytics dashboard`` served by uvicorn over a store that a real app filled under traffic.

Each view renders charts with data, filters change what is shown, the record view shows
masked values and never a secret the app received, the console stays free of errors (a
Content-Security-Policy violation would be one), and the attacker text in paths, headers,
bodies, consumer ids and names and exception messages is shown as text and never runs.
Screenshots of each view land in ``test-artifacts/dashboard/``; those of an hour of a
demo-like API (the README's, copied to ``docs/screenshots/``) in ``test-artifacts/dashboard/readme/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.support.dashboard import (
    BODY_INJECTION,
    CONSUMER_INJECTION,
    HEADER_INJECTION,
    MESSAGE_INJECTION,
    NAME_INJECTION,
    PATH_INJECTION,
    SECRETS,
    FilledStore,
    start_dashboard,
)
from tests.support.dashboard_story import fill_story
from tests.support.servers import ROOT, ServerProcess

pytest_plugins = ["tests.support.dashboard"]  # the store and dashboard fixtures (one each per run)

ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = ("chromium", "chromium-browser")
DRIVER = ("chromedriver", "chromium-driver")


def _which(names: tuple[str, ...]) -> str:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    raise AssertionError(
        f"none of {names} installed: apt-get install chromium chromium-driver (scripts/test.sh does)"
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1800", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=_which(DRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def visit(browser: Any, url: str, shot: str | None = None) -> None:
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"
    autorefresh = browser.find_elements(By.ID, "autorefresh")
    if autorefresh and autorefresh[0].is_selected():  # no reload in the middle of a test
        autorefresh[0].click()
    if shot:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / f"{shot}.png"))


def assert_safe(browser: Any) -> None:
    """Nothing the store holds ran, and the console has no errors (a script or handler that
    the Content-Security-Policy blocked would be one)."""
    assert browser.execute_script("return window.__pwned") is None
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def charts_with_data(browser: Any) -> list[int]:
    return [
        int(svg.get_attribute("data-points")) for svg in browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    ]


def test_overview_renders_charts_and_the_top_tables(
    browser: Any, dashboard: ServerProcess, store: FilledStore
) -> None:
    visit(browser, dashboard.base_url + "/?range=1h", "overview")
    points = charts_with_data(browser)
    assert len(points) == 3 and all(points), points
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.c2")  # bars of 2xx
    assert browser.find_element(By.ID, "kpi-count").text == f"{store.stored:,}"
    endpoints = browser.find_element(By.ID, "endpoints").text
    assert "/items/{item_id}" in endpoints and "(unmatched)" in endpoints
    consumers = browser.find_element(By.ID, "consumers").text
    assert CONSUMER_INJECTION in consumers and "acme" in consumers  # shown as text
    assert_safe(browser)


def test_a_window_in_the_past_shows_nothing(browser: Any, dashboard: ServerProcess) -> None:
    visit(browser, dashboard.base_url + "/?from=2001-01-01T00:00&to=2001-01-01T06:00")
    assert browser.find_element(By.ID, "kpi-count").text == "0"
    assert "No requests in this window." in browser.find_element(By.ID, "endpoints").text
    assert charts_with_data(browser) == [0, 0, 0]
    assert_safe(browser)


def test_endpoint_view_from_the_overview(browser: Any, dashboard: ServerProcess) -> None:
    visit(browser, dashboard.base_url + "/?range=1h")
    browser.find_element(By.LINK_TEXT, "/boom").click()
    visit(browser, browser.current_url, "endpoint")
    assert "GET /boom" in browser.find_element(By.ID, "endpoint-name").text
    assert all(charts_with_data(browser))
    assert "500" in browser.find_element(By.ID, "by-status").text
    failures = browser.find_element(By.CSS_SELECTOR, "table.log").text
    assert "ValueError" in failures
    assert "range=1h" in browser.current_url  # the window goes along
    assert_safe(browser)


def test_consumer_view_shows_labels_as_text(browser: Any, dashboard: ServerProcess) -> None:
    visit(browser, dashboard.base_url + "/?range=1h")
    browser.find_element(By.PARTIAL_LINK_TEXT, CONSUMER_INJECTION).click()
    visit(browser, browser.current_url, "consumer")
    assert browser.find_element(By.ID, "consumer-name").text == CONSUMER_INJECTION
    assert browser.find_element(By.ID, "consumer-label").text == NAME_INJECTION
    assert all(charts_with_data(browser))
    assert "/items/{item_id}" in browser.find_element(By.ID, "consumer-endpoints").text
    assert_safe(browser)


def log_statuses(browser: Any) -> list[str]:
    return [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "table.log td.status")]


def test_request_log_filters_and_pages(browser: Any, dashboard: ServerProcess, store: FilledStore) -> None:
    visit(browser, dashboard.base_url + "/requests?range=1h", "requests")
    assert len(log_statuses(browser)) == 50
    assert charts_with_data(browser) == [50]
    assert PATH_INJECTION in browser.find_element(By.CSS_SELECTOR, "table.log").text  # as text
    seen = len(log_statuses(browser))
    while browser.find_elements(By.ID, "older"):
        browser.find_element(By.ID, "older").click()
        seen += len(log_statuses(browser))
    assert seen == store.stored  # every record once, page by page
    # the form: a status class and a method
    visit(browser, dashboard.base_url + "/requests?range=1h")
    browser.find_element(By.NAME, "status").send_keys("5xx")
    browser.find_element(By.CSS_SELECTOR, "#filters button").click()
    statuses = log_statuses(browser)
    assert statuses and set(statuses) == {"500"}
    assert "status=5xx" in browser.current_url
    visit(browser, dashboard.base_url + "/requests?range=1h&method=POST&path=login", "requests-filtered")
    paths = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "table.log td.path")]
    assert paths and set(paths) == {"/login"}
    assert_safe(browser)


def test_record_view_shows_masked_values_and_no_secret(browser: Any, dashboard: ServerProcess) -> None:
    visit(browser, dashboard.base_url + "/requests?range=1h&path=login")
    browser.find_element(By.CSS_SELECTOR, "table.log td a").click()
    visit(browser, browser.current_url, "request")
    body = browser.find_element(By.ID, "request-body").text
    assert BODY_INJECTION in body and '"password"' in body and "\n" in body  # pretty-printed JSON
    masked = browser.find_element(By.ID, "masked").text
    assert "password" in masked and "authorization" in masked.lower()
    page = browser.page_source
    for secret in SECRETS:
        assert secret not in page
    assert HEADER_INJECTION not in page  # escaped in the source: &lt;img ...
    assert_safe(browser)


def test_record_view_shows_the_exception_and_header_text(browser: Any, dashboard: ServerProcess) -> None:
    visit(browser, dashboard.base_url + "/requests?range=1h&path=boom")
    browser.find_element(By.CSS_SELECTOR, "table.log td a").click()
    visit(browser, browser.current_url, "request-exception")
    assert browser.find_element(By.ID, "exception").text == f"ValueError: {MESSAGE_INJECTION}"
    assert "Traceback" in browser.find_element(By.ID, "stacktrace").text
    visit(browser, dashboard.base_url + "/requests?range=1h&path=items%2F1")
    browser.find_element(By.CSS_SELECTOR, "table.log td a").click()
    assert HEADER_INJECTION in browser.find_element(By.ID, "request-headers").text
    assert_safe(browser)


README_VIEWS = {  # the README's screenshot of each view: its name, and the page
    "overview": "/?range=1h",
    "endpoint": "/endpoint?method=GET&route=%2Fitems%2F%7Bitem_id%7D&range=1h",
    "consumer": "/consumer?id=acme&range=1h",
    "requests": "/requests?range=1h",
    "request": None,  # a login, its password masked: found from the log
}


def test_readme_screenshots_of_an_hour_of_traffic(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Each view over an hour of a demo-like API: per-minute charts with a bar or point for
    most minutes, the tables filled, and a login's record with its password masked."""
    folder = tmp_path_factory.mktemp("story")
    written = fill_story(folder / "spanlytics.db")
    server = start_dashboard(str(folder / "spanlytics.db"), folder)
    shots = ARTIFACTS / "readme"
    shots.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1280, 1000)
    try:
        for name, page in README_VIEWS.items():
            if page is None:
                visit(browser, server.base_url + "/requests?range=1h&method=POST&route=%2Flogin")
                browser.find_element(By.CSS_SELECTOR, "table.log tbody a").click()
            else:
                visit(browser, server.base_url + page)
            if name == "overview":
                assert browser.find_element(By.ID, "kpi-count").text == f"{written:,}"
                points = charts_with_data(browser)
                assert len(points) == 3 and min(points) >= 55, points  # most of the 60 minutes
            elif name == "request":
                assert "[masked]" in browser.page_source and "pw-" not in browser.page_source
            else:
                assert all(charts_with_data(browser)), name
            browser.save_screenshot(str(shots / f"{name}.png"))
            assert_safe(browser)
    finally:
        browser.set_window_size(1400, 1800)
        server.stop()


def test_the_readme_shows_each_view() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in README_VIEWS:
        assert f"](docs/screenshots/{name}.png)" in readme, name
        assert (ROOT / "docs" / "screenshots" / f"{name}.png").stat().st_size > 10_000, name
