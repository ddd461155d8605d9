"""The otel destination end to end: real servers (uvicorn --workers 2, gunicorn -w 2), the
real ``opentelemetry-instrument`` or providers set up in code, the SDK's own OTLP/HTTP
exporters, and a loopback OTLP receiver that decodes the protobuf (tests/support/otlp_collector.py).

For the examples' traffic mix (several consumers, 2xx/4xx/5xx, a login with a password):
one log record per request, exact counts per (method, route, status, consumer) in the log
records and in the duration histogram, log records correlated with the exported server spans,
and no secret in any OTLP payload (logs, metrics or traces).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from examples.demo_data import API_KEYS

from spanlytics.destinations.otel_signals.consumer_metrics import DURATION, REQUEST_SIZE
from tests.support.otlp_collector import OTLPCollector, otlp_collector
from tests.support.servers import BIN, ROOT, free_port, gunicorn_argv, poll_until, start_server, uvicorn_argv
from tests.test_examples import drive

INSTRUMENT = [str(BIN / "opentelemetry-instrument")]
SECRETS = (b"wonderland-42", b"sk_demo_", b"tok_")
QUERY_SECRET = "qs-4f2c9e1b7a"
KEYS = ("http.request.method", "http.route", "http.response.status_code", "spanlytics.consumer.id")
Key = tuple[str, str, int, "str | None"]
KEY = list(API_KEYS)[:2]
CONSUMER = [API_KEYS[k]["id"] for k in KEY]


def signals_env(collector: OTLPCollector, **extra: str) -> dict[str, str]:
    """Zero-code with every signal over OTLP/HTTP to ``collector``, short export intervals."""
    return {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OTEL_SERVICE_NAME": "otel-destination-test",
        "OTEL_TRACES_EXPORTER": "otlp_proto_http,spanlytics",
        "OTEL_LOGS_EXPORTER": "otlp_proto_http",
        "OTEL_METRICS_EXPORTER": "otlp_proto_http",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BLRP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        # two processes under one resource: delta points add up, cumulative ones would collide
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
        "SPANLYTICS_DESTINATIONS": "otel",
        "SPANLYTICS_FLUSH_INTERVAL": "0.1",
        **collector.exporter_env(),
        **extra,
    }


def request_logs(collector: OTLPCollector) -> list[dict[str, Any]]:
    return [log for log in collector.event_logs() if log["attributes"].get("url.path") != "/healthz"]


def log_key(log: dict[str, Any]) -> Key:
    attrs = log["attributes"]
    return (
        attrs["http.request.method"],
        attrs["http.route"],
        attrs["http.response.status_code"],
        attrs.get(KEYS[3]),
    )


def metric_counts(collector: OTLPCollector, name: str = DURATION, delta: bool = True) -> Counter[Key]:
    counts = collector.delta_counts(name, KEYS) if delta else collector.cumulative_counts(name, KEYS)
    return Counter({k: v for k, v in counts.items() if k[1] != "/healthz"})  # type: ignore[misc]


def server_span_ids(collector: OTLPCollector) -> set[tuple[str, str]]:
    return {
        (s["trace_id"], s["span_id"])
        for s in collector.server_spans()
        if "/healthz" not in (s["attributes"].get("http.target"), s["attributes"].get("url.path"))
    }


def assert_delivered(collector: OTLPCollector, sent: Counter[Key], delta: bool = True) -> None:
    """Everything ``sent`` arrived once, as log records, histogram points and spans."""
    total = sum(sent.values())
    poll_until(lambda: len(request_logs(collector)) >= total, 30, "a log record per request")
    poll_until(lambda: sum(metric_counts(collector, delta=delta).values()) >= total, 30, "histogram points")
    poll_until(lambda: len(server_span_ids(collector)) >= total, 30, "server spans")
    logs = request_logs(collector)
    assert Counter(log_key(log) for log in logs) == sent
    assert metric_counts(collector, delta=delta) == sent
    assert metric_counts(collector, REQUEST_SIZE, delta) == sent  # (0 bytes for a GET)
    log_ids = {(log["trace_id"], log["span_id"]) for log in logs}
    assert len(log_ids) == total and log_ids == server_span_ids(collector)
    for log in logs:
        status = log["attributes"]["http.response.status_code"]
        assert log["severity_text"] == ("ERROR" if status >= 500 else "WARN" if status >= 400 else "INFO")
        assert log["scope"] == "spanlytics" and log["flags"] & 1
        assert log["resource"]["service.name"] == "otel-destination-test"
    payloads = collector.payloads()
    for secret in SECRETS:
        assert secret not in payloads, secret


def _example_script(port: int) -> list[str]:
    return ["sh", str(ROOT / "examples" / "otel_collector" / "run.sh")]


SETUPS: dict[str, tuple[Callable[[int], list[str]], dict[str, str]]] = {
    # examples/otel_collector/run.sh: opentelemetry-instrument uvicorn --workers 2
    "zero-code-uvicorn-workers-2": (_example_script, {}),
    "zero-code-gunicorn-gthread-2": (
        lambda port: [
            *INSTRUMENT,
            *gunicorn_argv(
                "examples.flask_app:app", port, "-w", "2", "--worker-class", "gthread", "--threads", "4"
            ),
        ],
        {},
    ),
    # providers set in code, then spanlytics.configure(): no opentelemetry-instrument
    "programmatic-uvicorn-workers-2": (
        lambda port: uvicorn_argv("tests.support.otel_programmatic_app:app", port, "--workers", "2"),
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
    ),
}


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_every_request_arrives_once_as_a_log_record_and_in_the_histograms(setup: str, tmp_path: Path) -> None:
    argv, extra = SETUPS[setup]
    with otlp_collector() as collector:
        port = free_port()
        env = signals_env(collector, PORT=str(port), **extra)
        server = start_server(argv(port), port=port, log_dir=tmp_path, env=env)
        try:
            sent = drive(server.base_url)
            response = requests.get(
                f"{server.base_url}/items?api_key={QUERY_SECRET}", headers={"X-API-Key": KEY[0]}
            )
            sent[("GET", "/items", response.status_code, CONSUMER[0])] += 1
            assert_delivered(collector, sent)
        finally:
            server.stop()
        [queried] = [log for log in request_logs(collector) if log["attributes"].get("url.query")]
        query = queried["attributes"]["url.query"]
        assert query.startswith("api_key=") and "masked" in query and QUERY_SECRET not in query
        # What spanlytics sends is masked; the instrumentor's own span keeps its raw query
        # string (http.target / url.query), unchanged by spanlytics as before.
        assert QUERY_SECRET.encode() not in collector.payloads("/v1/logs", "/v1/metrics")
        login = next(
            log for log in request_logs(collector) if log["attributes"]["http.route"] == "/auth/login"
        )
        assert '"password":"[masked]"' in login["body"]["request"]["body"]
        assert "request.body.password" in {note["path"] for note in login["body"]["masked"]}
        assert "found no OpenTelemetry" not in server.log()  # the providers were found lazily
        assert len({log["resource"].get("process.pid") for log in request_logs(collector)}) >= 1


def test_a_ten_second_outage_of_the_receiver_loses_nothing_the_sdk_keeps(tmp_path: Path) -> None:
    """What the SDK keeps through an outage: its OTLP/HTTP exporters retry a failed export
    (backoff 1, 2, 4, 8, 16 s, +-20%) while the next attempt fits in OTEL_EXPORTER_OTLP_TIMEOUT,
    and the batch processors queue up to 2,048 log records / spans meanwhile (then drop);
    cumulative metrics carry every count in the next export. With a 30 s timeout the attempt
    at ~12-18 s reaches a receiver that was down for 10 s, and ~300 requests fit the queues:
    nothing may be lost. (Longer outages lose what the SDK drops; the local, http and
    postgres destinations have a disk spool for that.)"""
    with otlp_collector() as collector:
        port = free_port()
        env = signals_env(
            collector,
            OTEL_EXPORTER_OTLP_TIMEOUT="30",
            OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="cumulative",  # one process
        )
        argv = [*INSTRUMENT, *uvicorn_argv("examples.fastapi_service.main:app", port)]
        server = start_server(argv, port=port, log_dir=tmp_path, env=env)
        http = requests.Session()
        sent: Counter[Key] = Counter()

        def call(i: int) -> None:
            response = http.get(
                f"{server.base_url}/items/{i % 3 + 1}", headers={"X-API-Key": KEY[i % 2]}, timeout=10
            )
            sent[("GET", "/items/{item_id}", response.status_code, CONSUMER[i % 2])] += 1

        try:
            for i in range(20):
                call(i)
            poll_until(lambda: len(request_logs(collector)) >= 20, 20, "the first log records")
            collector.down()
            down_at = time.monotonic()
            i = 20
            while time.monotonic() - down_at < 10.0:  # traffic all through the outage
                call(i)
                i += 1
                time.sleep(0.03)
            collector.up()
            assert_delivered(collector, sent, delta=False)
        finally:
            server.stop()
        log = server.log()
        assert "Transient error" in log  # the exporters did meet the outage, and retried
        assert "Failed to export" not in log  # and never gave a batch up
        assert 250 <= sum(sent.values()) <= 2000, sent


def _scrape(url: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url, timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "spanlytics_request_duration_seconds_count":
                samples[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_a_prometheus_scrape_shows_the_consumer_series(tmp_path: Path) -> None:
    """opentelemetry-exporter-prometheus (OTEL_METRICS_EXPORTER=prometheus) in one process:
    a pull endpoint per process, so not under several workers (a fleet goes through the
    Collector's prometheus exporter instead)."""
    with otlp_collector() as collector:
        port, metrics_port = free_port(), free_port()
        env = signals_env(
            collector,
            OTEL_METRICS_EXPORTER="prometheus",
            OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
            OTEL_EXPORTER_PROMETHEUS_PORT=str(metrics_port),
        )
        argv = [*INSTRUMENT, *uvicorn_argv("examples.fastapi_service.main:app", port)]
        server = start_server(argv, port=port, log_dir=tmp_path, env=env)
        try:
            sent = drive(server.base_url)
            expected: Counter[str] = Counter()
            for key, count in sent.items():
                expected[key[3] or ""] += count
            url = f"http://127.0.0.1:{metrics_port}/metrics"

            def by_consumer() -> Counter[str]:
                counts: Counter[str] = Counter()
                for labels, value in _scrape(url).items():
                    attrs = dict(labels)
                    if attrs.get("http_route") != "/healthz":
                        counts[attrs.get("spanlytics_consumer_id", "")] += int(value)
                return counts

            poll_until(lambda: by_consumer() == expected, 20, "the consumer series")
            labels = {k for series in _scrape(url) for k, _ in series}
            assert {"http_request_method", "http_route", "http_response_status_code"} <= labels
        finally:
            server.stop()


@pytest.mark.parametrize("setup", ["zero-code-uvicorn-workers-2", "zero-code-gunicorn-gthread-2"])
def test_what_is_left_at_shutdown_still_goes_out(setup: str, tmp_path: Path) -> None:
    """Intervals longer than the test: only the shutdown flush delivers. Under gunicorn the
    exit hooks do it, and spanlytics' must run before the providers' (which were set up after
    spanlytics was built): pipeline.submit() registers it again at the first span."""
    argv, extra = SETUPS[setup]
    with otlp_collector() as collector:
        port = free_port()
        env = signals_env(
            collector,
            PORT=str(port),
            OTEL_BLRP_SCHEDULE_DELAY="60000",
            OTEL_BSP_SCHEDULE_DELAY="60000",
            OTEL_METRIC_EXPORT_INTERVAL="60000",
            SPANLYTICS_FLUSH_INTERVAL="60",
            **extra,
        )
        server = start_server(argv(port), port=port, log_dir=tmp_path, env=env)
        try:
            sent = drive(server.base_url)
        finally:
            server.stop()
        assert Counter(log_key(log) for log in request_logs(collector)) == sent
        assert metric_counts(collector) == sent


def test_the_exported_spans_are_unchanged_by_the_otel_destination(tmp_path: Path) -> None:
    """tests/test_auto.py compares spans with and without spanlytics attribute by attribute;
    here the same comparison with the otel destination (its own logs and metrics on)."""
    from tests.test_auto import _normalise

    results = {}
    for exporters, destinations in (("otlp_proto_http", "local"), ("otlp_proto_http,spanlytics", "otel")):
        with otlp_collector() as collector:
            port = free_port()
            env = signals_env(collector, OTEL_TRACES_EXPORTER=exporters, SPANLYTICS_DESTINATIONS=destinations)
            if "spanlytics" not in exporters:  # the example calls configure(): switch it off
                env["SPANLYTICS_ENABLED"] = "false"
            argv = [*INSTRUMENT, *uvicorn_argv("examples.fastapi_service.main:app", port)]
            server = start_server(argv, port=port, log_dir=tmp_path, env=env)
            try:
                total = sum(drive(server.base_url).values())
                poll_until(lambda: len(server_span_ids(collector)) >= total, 20, "spans")  # noqa: B023
            finally:
                server.stop()
            spans = [s for s in collector.spans if "healthz" not in s["name"]]
            results[destinations] = _normalise(spans, port)
            assert bool(request_logs(collector)) == (destinations == "otel")
    assert results["otel"] == results["local"]


NO_PROVIDERS_APP = """
import logging, spanlytics
from fastapi import FastAPI
from fastapi.testclient import TestClient

logging.basicConfig(format="%(name)s %(message)s")
spanlytics.configure(destinations="otel", flush_interval_s=0.05)  # sets a TracerProvider, no other
app = FastAPI()

@app.get("/orders")
def orders() -> dict[str, bool]:
    return {"ok": True}

client = TestClient(spanlytics.instrument_app(app))
statuses = [client.get("/orders").status_code for _ in range(3)]
assert spanlytics.flush()
statuses += [client.get("/orders").status_code for _ in range(3)]
assert spanlytics.flush()
print(statuses)
"""


def test_without_providers_it_warns_once_per_signal_and_the_app_is_unaffected(tmp_path: Path) -> None:
    """No LoggerProvider or MeterProvider set: the API's proxies are found at each export."""
    script = tmp_path / "no_providers.py"
    script.write_text(NO_PROVIDERS_APP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([200] * 6)
    assert done.stderr.count("found no OpenTelemetry logger provider") == 1, done.stderr
    assert done.stderr.count("found no OpenTelemetry meter provider") == 1, done.stderr
    assert "OTEL_LOGS_EXPORTER" in done.stderr and "set_meter_provider" in done.stderr
