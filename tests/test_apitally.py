"""destinations/apitally/: aggregation, log items, hub answers, and the examples against a
loopback hub (real servers, real sockets)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from examples.demo_data import API_KEYS

from spanlytics.config import Settings
from spanlytics.consumer import Consumer
from spanlytics.delivery.settings import SenderSettings
from spanlytics.destinations.apitally import (
    Aggregator,
    ApitallyDestination,
    ApitallyOptions,
    InstanceSlot,
    RequestLogEncoder,
    exception_type,
    response_time_bucket,
    truncated_message,
    truncated_traceback,
)
from spanlytics.record import ExceptionInfo, RequestRecord
from tests.support.apitally_hub import ApitallyHub
from tests.support.servers import free_port, gunicorn_argv, poll_until, start_server, uvicorn_argv
from tests.test_examples import drive
from tests.test_readme import record as readme_record

CLIENT_ID = "6a3d1d2e-5c4b-4f4e-9b7e-2f1c3a4b5c6d"


def record(**overrides: Any) -> RequestRecord:
    defaults: dict[str, Any] = {
        "duration_ms": 34.0,
        "route": "/items/{item_id}",
        "path": "/items/7",
        "url": "http://api.test/items/7",
        "status": 200,
        "consumer": Consumer("acme", "Acme Corp", "enterprise"),
        "request_headers": (("host", "api.test"), ("x-api-key", "[masked]")),
        "request_size": 0,
        "response_body": '{"id":7}',
        "response_size": 8,
        "client_ip": None,
    }
    return readme_record(**{**defaults, **overrides})


# --- the client's arithmetic --------------------------------------------------------------


def test_buckets_and_truncation_follow_the_client() -> None:
    assert response_time_bucket(0.0349) == 30
    assert response_time_bucket(0.29) == 280  # the client's float arithmetic: 0.29/0.01 < 29
    assert response_time_bucket(1.25) == 1250
    assert exception_type("ValueError") == "builtins.ValueError"
    assert exception_type("examples.demo_data.DemoError") == "examples.demo_data.DemoError"
    long = "x" * 5000
    assert len(truncated_message(long)) == 2048 and truncated_message(long).endswith("... (truncated)")
    assert truncated_message("  short  ") == "short"
    tb = "".join(f"line {i}\n" for i in range(20_000)) + "DemoError: boom\n"
    cut = truncated_traceback(tb)
    assert len(cut) <= 65536 and cut.startswith("... (truncated) ...") and cut.endswith("DemoError: boom")


def test_aggregates_per_consumer_method_route_status() -> None:
    agg = Aggregator()
    agg.add(
        [
            record(duration_ms=34.0, request_size=1500, response_size=999),
            record(duration_ms=5.0, request_size=2500, response_size=3001),
            record(status=404),
            record(consumer=None),
            record(route=None),  # unmatched: not counted
            record(method="OPTIONS"),  # not counted
        ]
    )
    data = agg.drain()
    by_key = {(e["consumer"], e["method"], e["path"], e["status_code"]): e for e in data["requests"]}
    assert set(by_key) == {
        ("acme", "GET", "/items/{item_id}", 200),
        ("acme", "GET", "/items/{item_id}", 404),
        (None, "GET", "/items/{item_id}", 200),
    }
    ok = by_key[("acme", "GET", "/items/{item_id}", 200)]
    assert ok["request_count"] == 2
    assert ok["request_size_sum"] == 4000 and ok["response_size_sum"] == 4000
    assert ok["response_times"] == {30: 1, 0: 1}
    assert ok["request_sizes"] == {1: 1, 2: 1} and ok["response_sizes"] == {0: 1, 3: 1}
    assert data["consumers"] == [{"identifier": "acme", "name": "Acme Corp", "group": "enterprise"}]
    assert agg.drain()["requests"] == []  # drained: the next interval starts empty


def test_consumers_are_sent_when_new_or_changed() -> None:
    agg = Aggregator()
    agg.add([record(), record(consumer=Consumer("plain"))])  # no name/group: not registered
    assert [c["identifier"] for c in agg.drain()["consumers"]] == ["acme"]
    agg.add([record()])
    assert agg.drain()["consumers"] == []  # unchanged
    agg.add([record(consumer=Consumer("acme", "Acme Inc", None))])
    assert agg.drain()["consumers"] == [{"identifier": "acme", "name": "Acme Inc", "group": "enterprise"}]
    agg.add([record(route=None, consumer=Consumer("dee", "Dee", "trial"))])  # a 404 from the router
    drained = agg.drain()
    assert drained["requests"] == [] and drained["consumers"] == [
        {"identifier": "dee", "name": "Dee", "group": "trial"}
    ]  # not counted, but the consumer is registered, as the client does


def test_request_sizes_only_for_requests_with_a_body() -> None:
    agg = Aggregator()
    with_length = (("content-length", "0"),)
    agg.add([record(request_size=0), record(request_size=0, request_headers=with_length)])
    (entry,) = agg.drain()["requests"]
    assert entry["request_count"] == 2 and entry["request_sizes"] == {0: 1}  # a GET has no size
    item = RequestLogEncoder(ApitallyOptions(request_logging=True)).item(record(request_size=0))
    assert item is not None and "size" not in item["request"]


def test_validation_and_server_errors() -> None:
    detail = {
        "detail": [
            {"loc": ["body", "price"], "msg": "Input should be greater than 0", "type": "greater_than"},
            {"loc": ["body", 0], "msg": "bad", "type": "t"},
            {"nonsense": True},
        ]
    }
    stack = 'Traceback (most recent call last):\n  File "x.py", line 1\nexamples.E: boom\n'
    agg = Aggregator()
    agg.add(
        [
            record(method="POST", status=422, response_body=json.dumps(detail)),
            record(method="POST", status=422, response_body=json.dumps(detail)),
            record(status=422, response_body='{"detail": [{"loc": '),  # truncated: skipped
            record(status=500, exception=ExceptionInfo("examples.E", " boom ", stack)),
            record(status=None, exception=ExceptionInfo("KeyError", "'k'", "KeyError: 'k'")),
        ]
    )
    data = agg.drain()
    assert sorted((e["loc"], e["error_count"]) for e in data["validation_errors"]) == [
        (["body", "0"], 2),
        (["body", "price"], 2),
    ]
    assert {(e["type"], e["msg"], e["error_count"]) for e in data["server_errors"]} == {
        ("examples.E", "boom", 1),
        ("builtins.KeyError", "'k'", 1),  # no response at all: counted as a 500, as the client
    }


def test_log_items_apply_the_client_options_on_masked_records() -> None:
    exc = ExceptionInfo("examples.E", "boom", "Traceback\nexamples.E: boom")
    rec = record(
        method="POST",
        query="page=2&api_key=%5Bmasked%5D",
        request_content_type="application/json",
        request_body='{"password":"[masked]","name":"x"}',
        request_size=35,
        exception=exc,
    )
    quiet = RequestLogEncoder(ApitallyOptions(request_logging=True)).item(rec)
    assert quiet is not None
    assert quiet["request"] == {
        "timestamp": 1700000000.1234567,
        "method": "POST",
        "path": "/items/{item_id}",
        "url": "http://api.test/items/7?page=2&api_key=%5Bmasked%5D",
        "size": 35,
        "consumer": "acme",
    }  # the client's defaults: no request headers or bodies
    assert quiet["response"]["headers"] == [["content-type", "application/json"]]
    assert "body" not in quiet["response"] and quiet["response"]["response_time"] == 0.034
    assert quiet["exception"] == {"type": "examples.E", "message": "boom", "traceback": exc.stacktrace}
    everything = ApitallyOptions(
        request_logging=True,
        log_query_params=False,
        log_request_headers=True,
        log_request_body=True,
        log_response_body=True,
        log_exception=False,
    )
    full = RequestLogEncoder(everything).item(rec)
    assert full is not None
    assert full["request"]["url"] == "http://api.test/items/7"
    assert full["request"]["headers"] == [["host", "api.test"], ["x-api-key", "[masked]"]]
    assert base64.b64decode(full["request"]["body"]) == b'{"password":"[masked]","name":"x"}'
    assert base64.b64decode(full["response"]["body"]) == b'{"id":7}'
    assert "exception" not in full
    big = RequestLogEncoder(everything).item(rec.__class__(**{**_fields(rec), "request_size": 60_000}))
    assert big is not None and base64.b64decode(big["request"]["body"]) == b"<body too large>"
    binary = RequestLogEncoder(everything).item(record(response_content_type="image/png"))
    assert binary is not None and "body" not in binary["response"]
    assert RequestLogEncoder(everything).item(record(method="OPTIONS")) is None


def _fields(rec: RequestRecord) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in rec.__dataclass_fields__}


def test_settings_validate_client_id_and_env(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.resolve(
        env={"SPANLYTICS_APITALLY_CLIENT_ID": CLIENT_ID.upper(), "SPANLYTICS_APITALLY_ENV": "staging-eu"}
    )
    options = ApitallyOptions.of(settings)
    assert options.client_id == CLIENT_ID and options.env == "staging-eu"
    bad = Settings.resolve(
        env={"SPANLYTICS_APITALLY_CLIENT_ID": "not-a-uuid", "SPANLYTICS_APITALLY_ENV": "bad env!"}
    )
    assert ApitallyOptions.of(bad) == ApitallyOptions(client_id=None, env="prod")
    assert "SPANLYTICS_APITALLY_CLIENT_ID" in caplog.text and "not-a-uuid" not in caplog.text
    with pytest.raises(ValueError, match="apitally_client_id"):
        Settings.resolve(apitally_client_id="nope")
    with pytest.raises(ValueError, match="apitally_env"):
        Settings.resolve(apitally_env="x" * 33)
    assert Settings.resolve(env={"SPANLYTICS_DESTINATIONS": "local,apitally"}).destinations == (
        "local",
        "apitally",
    )


def test_instance_slots_are_stable_per_slot_and_distinct_per_holder() -> None:
    client_id = str(uuid.uuid4())
    first = InstanceSlot(client_id, "prod")
    second = InstanceSlot(client_id, "prod")
    assert first.uuid != second.uuid  # two live holders (two workers): two instances
    remembered = first.uuid
    first.reacquire()  # released and taken again in this process: a restart keeps its uuid
    assert first.uuid == remembered
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked worker: the parent still holds its slot, so the child takes another
        first.reacquire()
        os.write(write, first.uuid.encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 100).decode()
    os.waitpid(pid, 0)
    assert uuid.UUID(child) and child not in (first.uuid, second.uuid)


# --- against the loopback hub -------------------------------------------------------------


@pytest.fixture
def hub() -> Any:
    stub = ApitallyHub()
    yield stub
    stub.close()


def destination(hub: ApitallyHub, tmp_path: Path, **options: Any) -> ApitallyDestination:
    settings = SenderSettings(hub.url, spool_dir=str(tmp_path / "spool"), backoff_initial_s=0.05)
    return ApitallyDestination(ApitallyOptions(client_id=CLIENT_ID, **options), settings)


def test_flush_sends_startup_sync_and_log(hub: ApitallyHub, tmp_path: Path) -> None:
    dest = destination(hub, tmp_path, request_logging=True)
    records = [record(), record(status=201, method="POST")]
    dest.export(records)
    assert dest.force_flush(10)
    kinds = [m.kind for m in hub.messages]
    assert kinds[0] == "startup" and {"sync", "log"} <= set(kinds)
    assert {m.client_id for m in hub.messages} == {CLIENT_ID} and {m.env for m in hub.messages} == {"prod"}
    log = hub.of("log")[0]
    assert uuid.UUID(log.query["uuid"][0]) and log.raw[:2] == b"\x1f\x8b"  # gzip
    assert [item["uuid"] for item in log.log_items()] == [r.record_id for r in records]
    sync = hub.syncs()[0]
    assert sync["instance_uuid"] == dest.instance_uuid and uuid.UUID(sync["message_uuid"])
    assert sync["resources"]["memory_rss"] > 0 and sync["resources"]["cpu_percent"] >= 0
    startup = hub.of("startup")[0].json()
    assert startup["instance_uuid"] == dest.instance_uuid and startup["versions"]["spanlytics"]
    dest.shutdown(5)
    assert sum(hub.request_counts().values()) == 2  # the final sync adds nothing twice


def test_hub_404_disables_the_destination(
    hub: ApitallyHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub.answers["startup"] = (404, {})
    hub.answers["sync"] = (404, {})
    dest = destination(hub, tmp_path)
    dest.export([record()])
    dest.force_flush(10)
    assert "does not know client id" in caplog.text and CLIENT_ID in caplog.text
    sent = len(hub.messages)
    dest.export([record()])
    dest.force_flush(2)
    dest.shutdown(2)
    assert len(hub.messages) == sent  # disabled: nothing more is sent


def test_hub_402_on_log_pauses_request_logging(hub: ApitallyHub, tmp_path: Path) -> None:
    hub.answers["log"] = (402, {"Retry-After": "120"})
    dest = destination(hub, tmp_path, request_logging=True)
    dest.export([record()])
    dest.force_flush(10)
    assert len(hub.of("log", accepted_only=False)) == 1
    del hub.answers["log"]
    dest.export([record(), record()])
    dest.force_flush(10)
    assert len(hub.of("log", accepted_only=False)) == 1  # paused: no more uploads
    assert sum(hub.request_counts().values()) == 3  # metrics keep flowing
    dest.shutdown(5)


def test_hub_422_is_logged_without_values(
    hub: ApitallyHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hub.answers["sync"] = (422, {})
    dest = destination(hub, tmp_path)
    dest.export([record()])
    dest.force_flush(10)
    assert "HTTP 422" in caplog.text and "body.requests: invalid" in caplog.text
    dest.shutdown(5)
    assert hub.of("sync") == []  # rejected, not retried forever


def test_sync_survives_a_hub_outage(hub: ApitallyHub, tmp_path: Path) -> None:
    hub.answers["sync"] = (503, {})
    dest = destination(hub, tmp_path)
    dest.export([record()] * 5)
    dest.force_flush(1)
    assert hub.of("sync") == []
    del hub.answers["sync"]
    poll_until(lambda: sum(hub.request_counts().values()) == 5, 20, "the retried sync")
    dest.shutdown(5)


# --- the examples under real servers ------------------------------------------------------

EXAMPLES = {
    "fastapi": (lambda port: uvicorn_argv("examples.fastapi_service.main:app", port), "python:starlette"),
    "flask": (
        lambda port: gunicorn_argv(
            "examples.flask_app:app", port, "--workers", "2", "--worker-class", "gthread", "--threads", "4"
        ),
        "python:flask",
    ),
    # the app (and spanlytics) loaded in the master, then forked: each worker starts afresh
    "flask-preload": (
        lambda port: gunicorn_argv(
            "examples.flask_app:app", port, "--preload", "--workers", "2", "--worker-class", "gthread"
        ),
        "python:flask",
    ),
}


def hub_env(hub: ApitallyHub, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "SPANLYTICS_DESTINATIONS": "apitally",
        "SPANLYTICS_APITALLY_CLIENT_ID": CLIENT_ID,
        "SPANLYTICS_APITALLY_BASE_URL": hub.url,
        "SPANLYTICS_APITALLY_REQUEST_LOGGING": "true",
        "SPANLYTICS_APITALLY_LOG_REQUEST_HEADERS": "true",
        "SPANLYTICS_APITALLY_LOG_REQUEST_BODY": "true",
        "SPANLYTICS_APITALLY_LOG_RESPONSE_BODY": "true",
        "SPANLYTICS_SPOOL_DIR": str(tmp_path / "spool"),
        **extra,
    }


def _assert_histograms_match_the_log(
    expected: Counter[tuple[Any, ...]], entries: list[dict[str, Any]], items: list[dict[str, Any]]
) -> None:
    """The sync histograms agree with what each request's log item says."""
    for key in expected:
        mine = [e for e in entries if (e["consumer"], e["method"], e["path"], e["status_code"]) == key]
        logged = [
            i
            for i in items
            if (i["request"].get("consumer"), i["request"]["method"], i["request"].get("path")) == key[:3]
            and i["response"]["status_code"] == key[3]
        ]
        assert len(logged) == expected[key]
        times: Counter[str] = Counter()
        sizes: Counter[str] = Counter()
        for entry in mine:
            times.update(entry["response_times"])
            sizes.update(entry["response_sizes"])
        assert times == Counter(str(response_time_bucket(i["response"]["response_time"])) for i in logged)
        assert sizes == Counter(str(i["response"]["size"] // 1000) for i in logged)
        assert sum(e["response_size_sum"] for e in mine) == sum(i["response"]["size"] for i in logged)
        assert sum(e["request_size_sum"] for e in mine) == sum(i["request"].get("size", 0) for i in logged)


def _assert_errors_and_consumers(syncs: list[dict[str, Any]], sent: Counter[Any], acme: str) -> None:
    """Validation errors once per 422, the one server error, the consumers seen."""
    validation = [e for sync in syncs for e in sync["validation_errors"]]
    assert validation and {e["path"] for e in validation} == {"/items"}
    per_loc = Counter[tuple[str | None, tuple[str, ...]]]()
    for e in validation:
        per_loc[(e["consumer"], tuple(e["loc"]))] += e["error_count"]
    for (consumer, _), count in per_loc.items():
        assert count == sent[("POST", "/items", 422, consumer)]  # each error once per 422
    errors = [e for sync in syncs for e in sync["server_errors"]]
    assert len(errors) == 1 and errors[0]["error_count"] == 1
    assert errors[0]["type"].endswith("DemoError") and errors[0]["type"].count(".") >= 2
    assert errors[0]["msg"] == "boom: an intentional unhandled exception"
    assert errors[0]["traceback"].rstrip().endswith("boom: an intentional unhandled exception")
    assert (errors[0]["consumer"], errors[0]["path"]) == (acme, "/debug/boom")
    consumers = {c["identifier"]: (c["name"], c["group"]) for sync in syncs for c in sync["consumers"]}
    assert consumers == {
        API_KEYS[k]["id"]: (API_KEYS[k]["name"], API_KEYS[k]["group"]) for k in list(API_KEYS)[:3]
    }


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_examples_sync_exactly_the_requests_made(example: str, hub: ApitallyHub, tmp_path: Path) -> None:
    argv, client = EXAMPLES[example]
    port = free_port()
    server = start_server(argv(port), port=port, log_dir=tmp_path, env=hub_env(hub, tmp_path))
    try:
        sent = drive(server.base_url)
        slow = requests.get(
            server.base_url + "/reports/slow?delay_ms=120", headers={"X-API-Key": KEY}, timeout=10
        )
        assert slow.status_code == 200
        sent[("GET", "/reports/slow", 200, API_KEYS[KEY]["id"])] += 1
    finally:
        server.stop()
    # every request made, per (consumer, method, route, status), summed over every sync
    expected = Counter({(c, m, r, s): n for (m, r, s, c), n in sent.items()})
    assert hub.request_counts() == expected

    syncs = hub.syncs()
    entries = [e for sync in syncs for e in sync["requests"]]
    items = hub.log_items()
    assert len(items) == sum(sent.values())  # one log item per request (healthz is excluded)
    _assert_histograms_match_the_log(expected, entries, items)
    slow_times = Counter[str]()
    for e in entries:
        if e["path"] == "/reports/slow":
            slow_times.update(e["response_times"])
    assert all(int(bucket) >= 120 for bucket in slow_times)

    acme = API_KEYS[KEY]["id"]
    _assert_errors_and_consumers(syncs, sent, acme)
    startups = [m.json() for m in hub.of("startup")]
    assert startups and {s["client"] for s in startups} == {client}
    paths = {(p["method"], p["path"]) for p in startups[-1]["paths"]}
    assert {("GET", "/items/{item_id}"), ("POST", "/items"), ("GET", "/reports/slow")} <= paths
    assert ("HEAD", "/items") not in paths
    # one instance per process: each worker, and a preloading master (which serves nothing)
    instances = {s["instance_uuid"] for s in syncs}
    assert len(instances) == {"fastapi": 1, "flask": 2, "flask-preload": 3}[example]

    login = next(i for i in items if i["request"].get("path") == "/auth/login")
    assert json.loads(base64.b64decode(login["request"]["body"]))["password"] == "[masked]"
    headers = dict(next(i for i in items if i["request"].get("consumer") == acme)["request"]["headers"])
    assert headers["x-api-key"] == "[masked]"
    # request data only (the startup message's OpenAPI document is the app's own text, with
    # its documented demo password, sent as the official client sends it)
    everything = b"".join(m.raw for m in hub.messages if m.kind == "sync")
    everything += json.dumps(items).encode()
    for secret in (b"sk_demo_", b"wonderland-42"):
        assert secret not in everything
    for decoded in (base64.b64decode(i["request"].get("body", "")) for i in items):
        assert b"wonderland-42" not in decoded


KEY = next(iter(API_KEYS))


# The load must be far above the 100 log items a second the 0.x client keeps. The 1,000
# requests/s of issue 6 depend on the machine: one uvicorn worker with full logging reached
# 1,100-1,400 on earlier machines and 650-850 on the 2-core machine CI runs on now (the code
# before the masking hardening too), so the floor asserted here is what proves the point
# (three times the client's cap) and the rate reached is reported, not a machine benchmark.
MIN_LOAD_RPS = 300


def test_sustained_load_is_all_counted(hub: ApitallyHub, tmp_path: Path) -> None:
    """wrk on loopback for 10 s, as fast as one uvicorn worker serves: every completed request is
    in the aggregates and the request log (the 0.x client keeps 100 log items a second, drops the
    rest)."""
    wrk = shutil.which("wrk")
    assert wrk, "wrk is installed by scripts/test.sh (apt-get install wrk)"
    port = free_port()
    env = hub_env(hub, tmp_path, SPANLYTICS_APITALLY_LOG_REQUEST_BODY="false")
    server = start_server(
        uvicorn_argv("tests.support.apitally_load_app:app", port),
        port=port,
        log_dir=tmp_path,
        env=env,
        ready_path="/ready",
    )
    connections = 16
    try:
        run = subprocess.run(
            [wrk, "-t1", f"-c{connections}", "-d10s", f"{server.base_url}/orders/17"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        server.stop()
    completed = int(run.stdout.split(" requests in ")[0].split()[-1])
    rate = completed / 10
    print(f"wrk reached {rate:.0f} requests/s")
    assert rate >= MIN_LOAD_RPS, f"the load generator reached only {rate:.0f} requests/s:\n{run.stdout}"
    counted = sum(n for (_, _, path, _), n in hub.request_counts().items() if path == "/orders/{order_id}")
    # wrk counts completed responses; up to one request per connection was in flight at the end
    assert completed <= counted <= completed + connections, (completed, counted)
    logged = sum(1 for i in hub.log_items() if i["request"].get("path") == "/orders/{order_id}")
    assert logged == counted


def test_an_absurd_sync_interval_is_refused_and_the_timer_keeps_syncing(
    hub: ApitallyHub, tmp_path: Path
) -> None:
    # 1e300 s used to be accepted: the timer announced, then died on its first wait
    # (OverflowError), and no sync left the process until it shut down.
    port = free_port()
    env = hub_env(hub, tmp_path, SPANLYTICS_APITALLY_SYNC_INTERVAL="1e300")
    argv = uvicorn_argv("examples.fastapi_service.main:app", port)
    server = start_server(argv, port=port, log_dir=tmp_path, env=env)
    try:
        for _ in range(3):  # without an API key: 401, counted all the same
            assert requests.get(f"{server.base_url}/items", timeout=10).status_code == 401
        # the client's own timing (10 s in the first hour); no flush, only the timer syncs
        poll_until(lambda: sum(hub.request_counts().values()) == 3, 30, "a sync from the timer")
    finally:
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 10
    assert (
        "ignoring invalid SPANLYTICS_APITALLY_SYNC_INTERVAL" in server.log() and "1e300" not in server.log()
    )


def test_options_refuse_an_interval_the_timer_cannot_wait(hub: ApitallyHub, tmp_path: Path) -> None:
    for interval in (1e300, float("inf"), float("nan"), 0.0, -5.0):
        with pytest.raises(ValueError, match="sync_interval_s"):
            ApitallyOptions(sync_interval_s=interval)
    assert ApitallyOptions(sync_interval_s=2.5).sync_interval_s == 2.5


def test_a_hub_that_redirects_is_not_followed(
    hub: ApitallyHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The hub's redirect would turn the POST into a GET without its body (301/302) or send
    # the counts somewhere nobody configured (307/308): never followed, counted, named.
    hub.answers["sync"] = (308, {"Location": "https://user:pw-secret@hub.elsewhere.test/v2/x?k=tok-secret"})
    dest = destination(hub, tmp_path)
    dest.export([record()] * 4)
    dest.force_flush(10)
    assert dest.sender.stats()["dropped"] == {"redirected": 4}
    assert "spanlytics apitally:" in caplog.text and "a redirect to hub.elsewhere.test" in caplog.text
    assert "pw-secret" not in caplog.text and "tok-secret" not in caplog.text
    del hub.answers["sync"]
    dest.export([record()] * 2)
    dest.force_flush(10)
    assert sum(hub.request_counts().values()) == 2  # the next sync goes through
    dest.shutdown(5)
