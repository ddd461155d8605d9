"""Fault injection: a real app under uvicorn delivering to a scripted stub on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.ingest_stub import IngestStub
from tests.support.servers import ServerProcess, free_port, poll_until, start_server, uvicorn_argv

APP = "tests.support.delivery_app:app"


def start_app(stub: IngestStub, tmp_path: Path, **env: str) -> ServerProcess:
    port = free_port()
    base = {
        "SPANLYTICS_DESTINATIONS": "http",
        "SPANLYTICS_HTTP_URL": stub.url,
        "SPANLYTICS_SPOOL_DIR": str(tmp_path / "spool"),
        "SPANLYTICS_FLUSH_INTERVAL": "0.2",
        "SPANLYTICS_DELIVERY_TIMEOUT": "1",
        "SPANLYTICS_DELIVERY_BACKOFF_MAX": "1",
        "SPANLYTICS_DELIVERY_BATCH_RECORDS": "50",
    }
    return start_server(uvicorn_argv(APP, port), port=port, log_dir=tmp_path, env={**base, **env})


def app_stats(server: ServerProcess) -> dict[str, Any]:
    requests.post(f"{server.base_url}/_spanlytics/flush", timeout=30)
    return requests.get(f"{server.base_url}/_spanlytics/stats", timeout=10).json()  # type: ignore[no-any-return]


def queries_by_id(stub: IngestStub) -> dict[str, str]:
    found = {}
    for received in stub.requests():
        if received.accepted:
            for item in json.loads(received.body):
                found[item["id"]] = item["query"]
    return found


@pytest.fixture
def stub() -> Any:
    server = IngestStub()
    yield server
    server.close()


def test_2000_records_survive_a_10_second_outage(stub: IngestStub, tmp_path: Path) -> None:
    app = start_app(stub, tmp_path)
    outage = [("status", 500), ("status", 503), ("status", 429, 1), ("hang", 3), ("reset",), "down"]
    stop = threading.Event()

    def script() -> None:  # 10 seconds of every kind of failure, then recovery
        started = time.monotonic()
        index = 0
        while time.monotonic() - started < 10 and not stop.is_set():
            mode = outage[index % len(outage)]
            if mode == "down":
                stub.down()
                stop.wait(1.5)
                stub.up()
            else:
                stub.mode = mode  # type: ignore[assignment]
                stop.wait(1.5)
            index += 1
        stub.mode = ("ok",)

    chaos = threading.Thread(target=script)
    chaos.start()
    try:
        with ThreadPoolExecutor(4) as pool, requests.Session() as http:

            def call(i: int) -> int:
                return http.get(f"{app.base_url}/items/{i % 10}?n={i}", timeout=10).status_code

            assert set(pool.map(call, range(2000))) == {200}
        chaos.join()
        poll_until(lambda: len(queries_by_id(stub)) >= 2000, 60, "all 2,000 records at the stub")
        stats = app_stats(app)["destinations"]["http"]
    finally:
        stop.set()
        chaos.join()
        app.stop()
    delivered = queries_by_id(stub)
    assert sorted(int(q.split("=")[1]) for q in delivered.values()) == list(range(2000))
    accepted = stub.accepted_ids()
    duplicates = {record_id for record_id, n in accepted.items() if n > 1}
    lost_responses = {i for r in stub.requests() if r.mode == "hang" for i in r.ids()}
    assert duplicates <= lost_responses  # only a batch whose 200 never reached us is sent twice
    assert stats["records_sent"] >= 2000 and stats["retries"] > 0 and stats["dropped"] == {}
    print(
        f"\n2,000 records: delivered {len(delivered)}, duplicated {len(duplicates)}, "
        f"retries {stats['retries']}, batches spooled {stats['batches_spooled']}"
    )


def latencies(server: ServerProcess, count: int) -> list[float]:
    out = []
    with requests.Session() as http:
        for i in range(count):
            started = time.perf_counter()
            assert http.get(f"{server.base_url}/items/1?n={i}", timeout=10).ok
            out.append((time.perf_counter() - started) * 1000)
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def test_p99_does_not_change_while_the_destination_hangs(stub: IngestStub, tmp_path: Path) -> None:
    app = start_app(stub, tmp_path, SPANLYTICS_DELIVERY_TIMEOUT="5")
    phases: dict[str, list[float]] = {"healthy": [], "hanging": []}
    slowest = 0.0
    try:
        latencies(app, 200)  # warm-up
        for _ in range(3):  # alternate A B A B: drift and noise hit both
            stub.mode = ("ok",)
            phases["healthy"].append(p99(latencies(app, 600)))
            stub.mode = ("hang", 30)
            during = latencies(app, 600)
            phases["hanging"].append(p99(during))
            slowest = max(slowest, *during)
        assert any(r.mode == "hang" for r in stub.requests())  # the sender really was stuck
    finally:
        stub.mode = ("ok",)
        app.stop()
    healthy, hanging = statistics.median(phases["healthy"]), statistics.median(phases["hanging"])
    print(
        f"\np99 (median of 3 phases) healthy {healthy:.2f} ms, destination hanging {hanging:.2f} ms, "
        f"slowest request while hanging {slowest:.0f} ms"
    )
    # Blocking on the hung destination would cost seconds (its 5 s timeout); the p99 bound is
    # loose because on 2 shared cores the healthy p99 alone varies from 5 to 15 ms run to run.
    assert slowest < 1000
    assert hanging <= max(2.0 * healthy, healthy + 15.0), phases


def test_kill_9_then_a_new_process_delivers_the_spool(stub: IngestStub, tmp_path: Path) -> None:
    stub.down()
    first = start_app(stub, tmp_path)
    with requests.Session() as http:
        for i in range(60):
            assert http.get(f"{first.base_url}/items/1?n={i}", timeout=5).ok
    spool = tmp_path / "spool"

    def spooled_records() -> int:
        return sum(int(p.name.split("-")[1]) for p in spool.rglob("*.batch"))

    poll_until(lambda: spooled_records() == 60, 20, "60 spooled records")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    stub.up()
    second = start_app(stub, tmp_path)
    try:
        poll_until(lambda: len(queries_by_id(stub)) == 60, 30, "the spooled records delivered")
    finally:
        second.stop()
    assert sorted(queries_by_id(stub).values()) == sorted(f"n={i}" for i in range(60))
    assert spooled_records() == 0


def test_capped_spool_long_outage_flat_memory_exact_drops(stub: IngestStub, tmp_path: Path) -> None:
    stub.down()
    cap = 1024 * 1024
    app = start_app(stub, tmp_path, SPANLYTICS_SPOOL_MAX_BYTES=str(cap))
    spool = tmp_path / "spool"
    body = json.dumps({"note": "x" * 1500}).encode()
    rss: list[int] = []
    sent = 0
    try:
        with requests.Session() as http:
            for round_no in range(6):
                for _ in range(500):
                    assert http.post(f"{app.base_url}/echo", data=body, timeout=5).ok
                    sent += 1
                rss.append(app_stats(app)["rss_kb"])
                size = sum(p.stat().st_size for p in spool.rglob("*") if p.is_file())  # claimed ones too
                assert size <= cap, f"round {round_no}: spool {size} bytes"
        stats = app_stats(app)["destinations"]["http"]
    finally:
        app.stop()
    in_spool = sum(int(p.name.split("-")[1]) for p in spool.rglob("*.batch*"))
    dropped = stats["dropped"]
    assert stats["records_accepted"] == sent == 3000
    assert dropped.get("spool_full", 0) + in_spool == sent  # every record accounted for, exactly
    assert set(dropped) <= {"spool_full"} and dropped["spool_full"] > 0
    growth_mb = (rss[-1] - rss[1]) / 1024
    print(
        f"\nspool {in_spool} records kept, {dropped['spool_full']} dropped; RSS MB {[r // 1024 for r in rss]}"
    )
    assert growth_mb < 8, rss


# --- faults that used to kill a thread or lose batches silently (issue 12, items 11, 12, 14) ---


def delivered_queries(stub: IngestStub) -> set[str]:
    """The ``n=`` queries of the records that reached the stub (health checks left out)."""
    return {q for q in queries_by_id(stub).values() if q.startswith("n=")}


def stop_within(server: ServerProcess, limit_s: float) -> None:
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < limit_s, "shutdown waited on a dead thread"


def test_absurd_numbers_in_the_environment_warn_and_every_thread_keeps_working(
    stub: IngestStub, tmp_path: Path
) -> None:
    # 1e300 seconds used to be accepted: the exporter's worker died on its first timed wait
    # (OverflowError), and the sender's on its first backoff; no record arrived after that.
    absurd = {
        "SPANLYTICS_FLUSH_INTERVAL": "1e300",
        "SPANLYTICS_DELIVERY_BACKOFF_MAX": "1e300",
        "SPANLYTICS_DELIVERY_TIMEOUT": "inf",
        "SPANLYTICS_MAX_RESPONSE_WAIT": "nan",
    }
    stub.mode = ("status", 503)  # the first attempt fails: the sender has to back off
    app = start_app(stub, tmp_path, **absurd)
    try:
        for i in range(5):
            requests.get(f"{app.base_url}/items/{i}?n={i}", timeout=10).raise_for_status()
        # no flush: only the background threads can deliver these
        poll_until(stub.requests, 20, "a first delivery attempt from the worker")
        stub.mode = ("ok",)
        poll_until(lambda: len(delivered_queries(stub)) == 5, 30, "every record after the backoff")
        stats = app_stats(app)
    finally:
        stop_within(app, 10)
    assert stats["destinations"]["http"]["retries"] >= 1 and stats["destinations"]["http"]["dropped"] == {}
    log = app.log()
    for variable in absurd:
        assert f"ignoring invalid {variable}" in log
    assert "1e300" not in log and "1e+300" not in log and "OverflowError" not in log


def test_a_header_value_that_is_not_latin_1_is_refused_at_start_and_delivery_goes_on(
    stub: IngestStub, tmp_path: Path
) -> None:
    # http.client cannot encode it: the sender thread died on its first batch, which was
    # neither sent, spooled nor counted, and shutdown waited 35 s for it.
    secret = "Bearer t\u00f6k\u20acn-sekret-9"
    app = start_app(stub, tmp_path, SPANLYTICS_HTTP_HEADERS=f"X-Tenant=acme,Authorization={secret}")
    try:
        for i in range(3):
            requests.get(f"{app.base_url}/items/{i}?n={i}", timeout=10).raise_for_status()
        poll_until(lambda: len(delivered_queries(stub)) == 3, 30, "the records, without a flush")
        stats = app_stats(app)["destinations"]["http"]
    finally:
        stop_within(app, 10)
    assert stats["dropped"] == {} and stats["records_sent"] >= 3
    log = app.log()
    assert "ignoring invalid SPANLYTICS_HTTP_HEADERS" in log and "header Authorization" in log
    assert "sekret" not in log and secret not in log
    assert all("Authorization" not in r.headers for r in stub.requests())  # the variable is unused


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirecting_destination_is_a_configuration_error_not_a_delivery(
    stub: IngestStub, tmp_path: Path, status: int
) -> None:
    # requests followed it: a 301/302 re-sent the POST as a GET without a body, the stub
    # answered 200, and the batch was counted as sent.
    stub.mode = ("redirect", status, f"http://user:pw-secret@127.0.0.1:{stub.port}/moved?token=tok-secret")
    app = start_app(stub, tmp_path)
    try:
        for i in range(3):
            requests.get(f"{app.base_url}/items/{i}?n={i}", timeout=10).raise_for_status()
        redirected = app_stats(app)["destinations"]["http"]
        stub.mode = ("ok",)  # the configuration is fixed on the receiving side: delivery goes on
        requests.get(f"{app.base_url}/items/9?n=1000", timeout=10).raise_for_status()
        poll_until(lambda: "n=1000" in delivered_queries(stub), 20, "the record after the redirects")
    finally:
        stop_within(app, 10)
    assert redirected["records_sent"] == 0 and redirected["dropped"].get("redirected", 0) >= 3
    assert delivered_queries(stub) == {"n=1000"}
    assert not [r for r in stub.requests() if r.mode == "GET" or r.path.startswith("/moved")]
    assert not list((tmp_path / "spool").rglob("*.batch"))  # never retried forever
    log = app.log()
    assert f"HTTP {status}, a redirect to 127.0.0.1:{stub.port}" in log and "final URL" in log
    assert "pw-secret" not in log and "tok-secret" not in log
