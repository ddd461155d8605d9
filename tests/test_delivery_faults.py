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
