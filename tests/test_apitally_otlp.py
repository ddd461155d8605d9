"""destinations/apitally/ with a write token: Apitally 1.x over OTLP/HTTP protobuf. The options,
the encoders with plain records, and the destination against a loopback receiver that decodes
what it gets (tests/support/otlp_decode.py)."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_DELTA
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spanlytics.config import Settings
from spanlytics.consumer import Consumer
from spanlytics.delivery.batches import Batch
from spanlytics.delivery.settings import SenderSettings
from spanlytics.destinations.apitally import ApitallyOptions
from spanlytics.destinations.apitally.hub import ApitallyDestination
from spanlytics.destinations.apitally.otlp import ApitallyOtlpDestination, OtlpTransport, is_sampled
from spanlytics.destinations.apitally.otlp_events import ConsumerUpdates, ErrorEvents
from spanlytics.destinations.apitally.otlp_metrics import RequestMetrics, bucket_index
from spanlytics.destinations.apitally.otlp_spans import BODY_TOO_LARGE, SpanEncoder
from spanlytics.destinations.registry import build_destinations
from spanlytics.record import ExceptionInfo, RequestRecord
from tests.support import otlp_decode
from tests.support.apitally_diff_apps import API_KEYS
from tests.support.ingest_stub import IngestStub
from tests.support.servers import free_port, gunicorn_argv, poll_until, start_server, uvicorn_argv
from tests.test_apitally import CLIENT_ID
from tests.test_apitally import record as apitally_record

TOKEN = "apt_" + "a1B2c3D4e5F6g7H8i9J0k1L2"


def record(**overrides: Any) -> RequestRecord:
    defaults: dict[str, Any] = {
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "start_time_ns": 1_700_000_000_000_000_000,
        "host": "api.test:8000",
        "query": "page=2&api_key=[masked]",
        "user_agent": "curl/8",
        "client_ip": "10.1.2.3",
    }
    return apitally_record(**{**defaults, **overrides})


# --- options -------------------------------------------------------------------------------


def test_a_write_token_selects_1x_and_a_client_id_alone_0x(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ApitallyOptions(write_token=TOKEN).protocol == "1.x"
    assert ApitallyOptions(client_id=CLIENT_ID).protocol == "0.x"
    assert ApitallyOptions().protocol is None
    monkeypatch.setenv("SPANLYTICS_APITALLY_WRITE_TOKEN", f" {TOKEN} ")
    monkeypatch.setenv("SPANLYTICS_APITALLY_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("SPANLYTICS_APITALLY_SAMPLE_RATE", "0.25")
    options = ApitallyOptions.of(Settings.resolve())
    assert (options.write_token, options.otlp_endpoint, options.sample_rate) == (
        TOKEN,
        "http://127.0.0.1:4318",
        0.25,
    )
    assert TOKEN not in repr(options)  # a secret
    defaults = ApitallyOptions(write_token=TOKEN)
    assert (defaults.otlp_endpoint, defaults.sample_rate) == ("https://otlp.apitally.io", 1.0)


@pytest.mark.parametrize(
    "bad", ["apt_short", "apx_a1B2c3D4e5F6g7H8i9J0k1L2", TOKEN + "9", "apt_a1B2c3D4e5F6g7H8i9J0k1L-"]
)
def test_an_invalid_write_token_is_refused_without_showing_it(
    bad: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError, match="apitally_write_token") as raised:
        Settings.resolve(apitally_write_token=bad)
    assert bad not in str(raised.value) and "apt_ followed by 24 letters or digits" in str(raised.value)
    monkeypatch.setenv("SPANLYTICS_APITALLY_WRITE_TOKEN", bad)
    with caplog.at_level(logging.WARNING, "spanlytics"):
        assert ApitallyOptions.of(Settings.resolve()).write_token is None
    assert "SPANLYTICS_APITALLY_WRITE_TOKEN" in caplog.text and bad not in caplog.text


def test_sample_rate_and_endpoint_are_checked() -> None:
    assert ApitallyOptions(write_token=TOKEN, sample_rate=0).sample_rate == 0  # metrics only
    for rate in (1.5, -0.1, math.nan, True):
        with pytest.raises(ValueError, match="apitally_sample_rate"):
            Settings.resolve(apitally_sample_rate=rate)
    with pytest.raises(ValueError, match="apitally_otlp_endpoint"):
        Settings.resolve(apitally_otlp_endpoint="otlp.apitally.io")


def test_both_credentials_speak_1x_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.resolve(
        destinations="apitally",
        apitally_write_token=TOKEN,
        apitally_client_id=CLIENT_ID,
        apitally_otlp_endpoint="http://127.0.0.1:9",
        spool_dir=str(tmp_path / "spool"),
    )
    with caplog.at_level(logging.WARNING, "spanlytics"):
        (built,) = build_destinations(settings)
    assert isinstance(built, ApitallyOtlpDestination)
    assert "the write token wins" in caplog.text and TOKEN not in caplog.text
    built.shutdown(0.5)
    only_id = Settings.resolve(destinations="apitally", apitally_client_id=CLIENT_ID, spool_dir=str(tmp_path))
    (hub,) = build_destinations(only_id)
    assert isinstance(hub, ApitallyDestination)  # 0.x keeps working with a client id
    hub.shutdown(0.5)


# --- spans ---------------------------------------------------------------------------------


def _decoded(encoded: bytes | None) -> Span:
    assert encoded is not None
    return Span.FromString(encoded)


def test_a_record_becomes_a_server_span_with_stable_semconv_names() -> None:
    options = ApitallyOptions(write_token=TOKEN, log_request_headers=True)
    span = _decoded(
        SpanEncoder(options).encode(
            record(
                request_size=12,
                request_headers=(
                    ("content-length", "12"),
                    ("x-api-key", "[masked]"),
                    ("accept", "a"),
                    ("accept", "b"),
                ),
            )
        )
    )
    assert span.name == "GET /items/{item_id}" and span.kind == Span.SpanKind.SPAN_KIND_SERVER
    assert (
        span.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736" and span.span_id.hex() == "00f067aa0ba902b7"
    )
    assert span.end_time_unix_nano - span.start_time_unix_nano == 34_000_000
    attributes = otlp_decode.attributes(span.attributes)
    assert attributes == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "url.path": "/items/7",
        "url.query": "page=2&api_key=[masked]",
        "server.address": "api.test",
        "server.port": 8000,
        "network.protocol.version": "1.1",
        "user_agent.original": "curl/8",
        "client.address": "10.1.2.3",
        "http.response.status_code": 200,
        "http.route": "/items/{item_id}",
        "apitally.consumer.identifier": "acme",
        "http.request.body.size": 12,
        "http.response.body.size": 8,
        "http.request.header.content-length": ["12"],
        "http.request.header.x-api-key": ["[masked]"],
        "http.request.header.accept": ["a", "b"],
        "http.response.header.content-type": ["application/json"],  # response headers: on by default
    }
    assert not span.events and span.status.code == 0


def test_bodies_headers_and_the_placeholder_follow_the_switches() -> None:
    big = json.dumps({"pad": "x" * 50_001})
    rec = record(
        method="POST",
        request_body=big,
        request_size=len(big),
        request_content_type="application/json",
        response_content_type="application/json; charset=utf-8",
        response_headers=(("content-type", "application/json"),),
    )
    everything = ApitallyOptions(write_token=TOKEN, log_request_body=True, log_response_body=True)
    attributes = otlp_decode.attributes(_decoded(SpanEncoder(everything).encode(rec)).attributes)
    assert attributes["apitally.request.body"] == BODY_TOO_LARGE == "[BODY_TOO_LARGE]"
    assert attributes["apitally.response.body"] == '{"id":7}'
    assert attributes["http.response.header.content-type"] == ["application/json"]
    assert not any(key.startswith("http.request.header.") for key in attributes)  # off by default
    defaults = otlp_decode.attributes(
        _decoded(SpanEncoder(ApitallyOptions(write_token=TOKEN)).encode(rec)).attributes
    )
    assert "apitally.request.body" not in defaults and "apitally.response.body" not in defaults
    html = record(response_body="<p>", response_content_type="text/html")
    assert "apitally.response.body" not in otlp_decode.attributes(
        _decoded(SpanEncoder(everything).encode(html)).attributes
    )
    no_query = ApitallyOptions(write_token=TOKEN, log_query_params=False)
    assert "url.query" not in otlp_decode.attributes(
        _decoded(SpanEncoder(no_query).encode(record())).attributes
    )


def test_an_exception_is_an_event_and_an_error_status() -> None:
    exception = ExceptionInfo("examples.demo_data.DemoError", "boom", "Traceback ...\nDemoError: boom")
    span = _decoded(
        SpanEncoder(ApitallyOptions(write_token=TOKEN)).encode(record(status=500, exception=exception))
    )
    assert [(e.name, otlp_decode.attributes(e.attributes)) for e in span.events] == [
        (
            "exception",
            {
                "exception.type": "examples.demo_data.DemoError",
                "exception.message": "boom",
                "exception.stacktrace": "Traceback ...\nDemoError: boom",
                "exception.escaped": "False",
            },
        )
    ]
    assert span.status.code == 2 and span.status.message == ""
    assert otlp_decode.attributes(span.attributes)["error.type"] == "500"  # as the SDK's instrumentors
    plain_503 = _decoded(SpanEncoder(ApitallyOptions(write_token=TOKEN)).encode(record(status=503)))
    assert plain_503.status.code == 2 and otlp_decode.attributes(plain_503.attributes)["error.type"] == "503"
    unmatched = _decoded(
        SpanEncoder(ApitallyOptions(write_token=TOKEN)).encode(record(route=None, status=404))
    )
    assert unmatched.name == "GET" and "http.route" not in otlp_decode.attributes(unmatched.attributes)
    assert SpanEncoder(ApitallyOptions(write_token=TOKEN)).encode(record(method="OPTIONS")) is None


def test_sampling_follows_the_trace_id_ratio_rule() -> None:
    ids = [f"{i:016x}{(i * 0x9E3779B97F4A7C15) % 2**64:016x}" for i in range(4000)]
    kept = [t for t in ids if is_sampled(t, 0.25)]
    assert 800 < len(kept) < 1200
    assert all(is_sampled(t, 0.5) for t in kept)  # a higher rate keeps a superset
    assert all(is_sampled(t, 1.0) for t in ids) and not any(is_sampled(t, 0.0) for t in ids)


# --- metrics and events ---------------------------------------------------------------------


def test_bucket_index_is_the_scale_3_exponential_bucket() -> None:
    base = 2 ** (1 / 8)
    for value in (0.001, 0.0345, 0.5, 1.0, 1.7, 2.0, 1500.0, 50_001.0):
        index = bucket_index(value)
        assert base**index < value * (1 + 1e-12) and value <= base ** (index + 1) * (1 + 1e-12)
    assert bucket_index(1.0) == -1 and bucket_index(2.0) == 7  # powers of two close a bucket


def test_request_metrics_are_delta_histograms_per_method_route_status_consumer() -> None:
    metrics = RequestMetrics()
    for rec in (
        record(),
        record(duration_ms=120.0),
        record(status=404, consumer=None),
        record(route=None),  # unmatched: not counted (as the SDK)
        record(method="OPTIONS"),
        record(method="POST", request_size=1500, request_headers=(("content-length", "1500"),)),
    ):
        metrics.add(rec)
    (body,) = metrics.collect(b"", b"", end_ns=2_000)
    received = otlp_decode.metric_points([_received("/v1/metrics", body)])
    assert {(p["name"], p["unit"], p["type"], p["temporality"]) for p in received} == {
        ("http.server.request.duration", "s", "exponential_histogram", AGGREGATION_TEMPORALITY_DELTA),
        ("http.server.request.body.size", "By", "exponential_histogram", AGGREGATION_TEMPORALITY_DELTA),
        ("http.server.response.body.size", "By", "exponential_histogram", AGGREGATION_TEMPORALITY_DELTA),
    }
    durations = {
        tuple(sorted(p["point"]["attributes"].items())): p["point"]
        for p in received
        if p["name"] == "http.server.request.duration"
    }
    key = (
        ("apitally.consumer.identifier", "acme"),
        ("http.request.method", "GET"),
        ("http.response.status_code", 200),
        ("http.route", "/items/{item_id}"),
    )
    point = durations[key]
    assert int(point["count"]) == 2 and point["scale"] == 3 and math.isclose(point["sum"], 0.154)
    assert sum(int(n) for n in point["positive"]["bucket_counts"]) == 2
    assert sum(int(p["count"]) for p in durations.values()) == 4
    no_consumer = next(p for k, p in durations.items() if ("http.response.status_code", 404) in k)
    assert "apitally.consumer.identifier" not in no_consumer["attributes"]
    sizes = [p for p in received if p["name"] == "http.server.request.body.size"]
    assert [int(p["point"]["count"]) for p in sizes] == [1]  # only the request that had a body
    assert metrics.collect(b"", b"") == []  # delta: the next interval starts empty


def test_consumer_updates_and_error_events_have_the_sdk_shapes() -> None:
    updates = ConsumerUpdates()
    assert updates.update(record()) == {"identifier": "acme", "name": "Acme Corp", "group": "enterprise"}
    assert updates.update(record()) is None  # unchanged
    assert updates.update(record(consumer=Consumer("plain"))) is None  # nothing to tell
    assert updates.update(record(consumer=Consumer("acme", "Acme Inc"))) == {
        "identifier": "acme",
        "name": "Acme Inc",
    }
    errors = ErrorEvents()
    detail = {"detail": [{"loc": ["body", "price"], "msg": "must be > 0", "type": "greater_than"}]}
    invalid = record(
        method="POST",
        route="/items",
        status=422,
        response_body=json.dumps(detail),
        response_content_type="application/json",
    )
    boom = record(status=500, exception=ExceptionInfo("ValueError", "boom", "Traceback\nValueError: boom"))
    for rec in (
        invalid,
        invalid,
        record(
            method="POST",
            route="/items",
            status=422,
            consumer=None,
            response_body=json.dumps(detail),
            response_content_type="application/json",
        ),
        boom,
    ):
        errors.add(rec)
    events = errors.drain()
    assert events == [
        (
            "apitally.request.validation_error",
            {
                "method": "POST",
                "path": "/items",
                "source": "body",
                "field": "price",
                "message": "must be > 0",
                "type": "greater_than",
                "counts": [{"consumer": "acme", "count": 2}, {"count": 1}],
            },
        ),
        (
            "apitally.request.server_error",
            {
                "method": "GET",
                "path": "/items/{item_id}",
                "type": "builtins.ValueError",
                "message": "boom",
                "stacktrace": "Traceback\nValueError: boom",
                "counts": [{"consumer": "acme", "count": 1}],
            },
        ),
    ]
    assert errors.drain() == []


def _received(path: str, body: bytes) -> Any:
    from tests.support.ingest_stub import Received

    return Received(path, {}, body, "ok", True)


# --- the destination against a loopback receiver --------------------------------------------


@pytest.fixture
def stub() -> Iterator[IngestStub]:
    receiver = IngestStub()
    yield receiver
    receiver.close()


def destination(endpoint: str, tmp_path: Path, **options: Any) -> ApitallyOtlpDestination:
    settings = SenderSettings(
        endpoint, spool_dir=str(tmp_path / "spool"), backoff_initial_s=0.05, backoff_max_s=0.2
    )
    return ApitallyOtlpDestination(ApitallyOptions(write_token=TOKEN, env="staging", **options), settings)


def test_flush_sends_spans_events_and_metrics_with_the_headers(stub: IngestStub, tmp_path: Path) -> None:
    dest = destination(stub.url, tmp_path)
    records = [record(), record(status=201, method="POST", route="/items", trace_id="1" * 32)]
    dest.export(records)
    assert dest.force_flush(10)
    received = stub.requests()
    assert {r.path for r in received} == {"/v1/traces", "/v1/logs", "/v1/metrics"}
    for r in received:
        assert r.headers["Authorization"] == f"Bearer {TOKEN}" and r.headers["Apitally-Env"] == "staging"
        assert (
            r.headers["Content-Type"] == "application/x-protobuf" and r.headers["Content-Encoding"] == "gzip"
        )
    spans = otlp_decode.spans(received)
    assert [s["name"] for s in spans] == ["GET /items/{item_id}", "POST /items"]
    resource = spans[0]["resource"]
    assert (
        resource["service.instance.id"] == dest.instance_id
        and resource["deployment.environment.name"] == "staging"
    )
    assert (
        resource["telemetry.distro.name"] == "spanlytics" and resource["telemetry.sdk.language"] == "python"
    )
    assert {"service.name", "telemetry.sdk.name", "telemetry.sdk.version", "telemetry.distro.version"} <= set(
        resource
    )
    assert [e["event_name"] for e in otlp_decode.log_records(received)] == [
        "apitally.consumer.update",
        "apitally.app.startup",
    ]
    startup = otlp_decode.events(received, "apitally.app.startup")[0]["json"]
    assert {"framework", "versions", "config", "paths"} <= set(startup) and startup["config"][
        "sample_rate"
    ] == 1.0
    points = otlp_decode.metric_points(received)
    assert {p["name"] for p in points} >= {
        "process.uptime",
        "process.cpu.utilization",
        "process.memory.usage",
        "http.server.request.duration",
    }
    assert all(p["scope"] == "apitally" for p in points)
    dest.shutdown(5)
    durations = [
        p for p in otlp_decode.metric_points(stub.requests()) if p["name"] == "http.server.request.duration"
    ]
    assert sum(int(p["point"]["count"]) for p in durations) == 2  # the final cycle adds nothing twice
    assert TOKEN not in "".join(
        path.read_bytes().decode("latin-1") for path in (tmp_path / "spool").rglob("*") if path.is_file()
    )


def test_metrics_count_every_request_and_spans_only_the_sampled(stub: IngestStub, tmp_path: Path) -> None:
    dest = destination(stub.url, tmp_path, sample_rate=0.0)
    dest.export([record(trace_id=f"{i:032x}") for i in range(1, 21)])
    dest.shutdown(5)
    assert otlp_decode.spans(stub.requests()) == []
    durations = [
        p for p in otlp_decode.metric_points(stub.requests()) if p["name"] == "http.server.request.duration"
    ]
    assert sum(int(p["point"]["count"]) for p in durations) == 20


def test_retryable_answers_are_retried_and_others_dropped_with_one_line(
    stub: IngestStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stub.mode = ("status", 503, None)
    dest = destination(stub.url, tmp_path)
    dest.export([record()])
    dest.force_flush(1)
    assert otlp_decode.spans(stub.requests()) == []
    stub.mode = ("ok",)
    poll_until(lambda: len(otlp_decode.spans(stub.requests())) == 1, 20, "the retried spans")
    stub.mode = ("status", 401, None)
    with caplog.at_level(logging.WARNING, "spanlytics"):
        dest.export([record(trace_id="2" * 32)])
        dest.force_flush(5)
        dest.export([record(trace_id="3" * 32)])
        dest.force_flush(5)
    rejected = [r for r in caplog.records if "HTTP 401" in r.getMessage()]
    assert len(rejected) == 1 and TOKEN not in caplog.text  # dropped, one line, not paused
    stub.mode = ("ok",)
    dest.export([record(trace_id="4" * 32)])
    dest.force_flush(5)
    assert [s["trace_id"] for s in otlp_decode.spans(stub.requests())][-1] == "4" * 32
    dest.shutdown(5)
    assert dest.sender.dropped().get("rejected", 0) >= 2


def test_the_export_interval_header_sets_the_cycle(tmp_path: Path) -> None:
    answers = iter(["30", "1", "600", "soon"])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Apitally-Export-Interval", next(answers, "30"))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seen: list[float] = []
        settings = SenderSettings(
            f"http://127.0.0.1:{server.server_address[1]}", headers=(("Apitally-Env", "dev"),)
        )
        transport = OtlpTransport("apitally", settings, seen.append)
        for _ in range(4):
            assert transport.send(Batch(b"", 0, "/v1/metrics", "application/x-protobuf")).outcome == "sent"
        transport.close()
        assert seen == [30.0, 5.0, 60.0]  # bounded to 5-60 s; an unreadable value is ignored
    finally:
        server.shutdown()
        server.server_close()
    dest = destination("http://127.0.0.1:9", tmp_path)
    assert dest.interval_s == 15.0
    dest.transport_interval(42.0)
    assert dest.interval_s == 42.0
    dest.shutdown(0.5)


def test_spans_counts_survive_an_outage_through_the_spool(stub: IngestStub, tmp_path: Path) -> None:
    dest = destination(stub.url, tmp_path)
    stub.down()
    sent = [record(trace_id=f"{i:032x}") for i in range(1, 51)]
    dest.export(sent[:25])
    dest.force_flush(1)
    dest.export(sent[25:])
    dest.force_flush(1)
    stub.up()

    def counted() -> int:
        points = otlp_decode.metric_points(stub.requests())
        return sum(int(p["point"]["count"]) for p in points if p["name"] == "http.server.request.duration")

    # the spooled batches go out as the sender finds the receiver back, spans and metrics alike
    poll_until(lambda: len(otlp_decode.spans(stub.requests())) == 50 and counted() == 50, 30, "all of it")
    dest.shutdown(5)
    assert Counter(s["trace_id"] for s in otlp_decode.spans(stub.requests())) == Counter(
        r.trace_id for r in sent
    )
    assert counted() == 50


# --- a real server: an outage of the endpoint, then SIGTERM -----------------------------------

OUTAGE_S = 10.0


def test_a_10s_outage_and_sigterm_lose_nothing(stub: IngestStub, tmp_path: Path) -> None:
    """FastAPI under uvicorn: the endpoint is down for 10 s while requests come, back for a few,
    then SIGTERM. What the process could not deliver waits in the spool, and the next process
    on the same spool delivers it: every request is counted once and logged once."""
    env = {
        "DIFF_SIDE": "",
        "DIFF1_SIDE": "spanlytics",
        "DIFF1_FRAMEWORK": "fastapi",
        "DIFF1_WRITE_TOKEN": TOKEN,
        "DIFF1_OTLP_ENDPOINT": stub.url,
        "SPANLYTICS_SPOOL_DIR": str(tmp_path / "spool"),
        "SPANLYTICS_DELIVERY_BACKOFF_MAX": "1",
    }

    def serve() -> Any:
        port = free_port()
        argv = uvicorn_argv("tests.support.apitally1_diff_apps:app", port)
        return start_server(argv, port=port, env=env, log_dir=tmp_path)

    server = serve()
    http = requests.Session()
    sent: Counter[str | None] = Counter()

    def call(key: str | None) -> None:
        response = http.get(
            f"{server.base_url}/items/5", headers={"X-API-Key": key} if key else {}, timeout=10
        )
        assert response.status_code == 200
        sent[API_KEYS[key][0] if key else None] += 1

    keys = [*list(API_KEYS)[:2], None]
    try:
        stub.down()
        outage_ends = time.monotonic() + OUTAGE_S
        while time.monotonic() < outage_ends and sum(sent.values()) < 300:  # paced load, bounded
            call(keys[sum(sent.values()) % 3])
            time.sleep(0.05)
        assert otlp_decode.spans(stub.requests()) == []  # nothing got through
        stub.up()
        for i in range(30):
            call(keys[i % 3])
    finally:
        server.stop()  # SIGTERM (uvicorn re-raises it once shut down: the exit code says -15)
    restarted = serve()  # the same spool: it delivers what the first process left there
    try:

        def counted() -> Counter[str | None]:
            counts: Counter[str | None] = Counter()
            for point in otlp_decode.metric_points(stub.requests()):
                if (
                    point["name"] == "http.server.request.duration"
                    and point["point"]["attributes"]["http.route"] == "/items/{item_id}"
                ):
                    counts[point["point"]["attributes"].get("apitally.consumer.identifier")] += int(
                        point["point"]["count"]
                    )
            return counts

        def complete() -> bool:
            return counted() == sent and len(otlp_decode.spans(stub.requests())) >= sum(sent.values())

        poll_until(complete, 60, "every request of the first process")
    finally:
        restarted.stop()
    spans = otlp_decode.spans(stub.requests())
    assert len(spans) == sum(sent.values()) == len({s["span_id"] for s in spans})  # once each
    assert counted() == sent


def test_forked_gunicorn_workers_are_instances_of_their_own(stub: IngestStub, tmp_path: Path) -> None:
    """Flask under gunicorn, the app (and spanlytics) loaded in the master, then forked: each
    process sends under its own service.instance.id, and every request is counted once."""
    port = free_port()
    argv = gunicorn_argv(
        "tests.support.apitally1_diff_apps:app",
        port,
        "--preload",
        "--workers",
        "2",
        "--worker-class",
        "gthread",
    )
    env = {
        "DIFF_SIDE": "",
        "DIFF1_SIDE": "spanlytics",
        "DIFF1_FRAMEWORK": "flask",
        "DIFF1_WRITE_TOKEN": TOKEN,
        "DIFF1_OTLP_ENDPOINT": stub.url,
        "SPANLYTICS_SPOOL_DIR": str(tmp_path / "spool"),
    }
    server = start_server(argv, port=port, env=env, log_dir=tmp_path)
    sent: Counter[str | None] = Counter()
    try:
        for i in range(40):  # a new connection each: both workers serve
            key = list(API_KEYS)[i % 2]
            response = requests.get(f"{server.base_url}/items/{i}", headers={"X-API-Key": key}, timeout=10)
            assert response.status_code == 200
            sent[API_KEYS[key][0]] += 1
    finally:
        server.stop()
    received = stub.requests()
    spans = otlp_decode.spans(received)
    assert len(spans) == 40 == len({s["span_id"] for s in spans})
    counts: Counter[str | None] = Counter()
    for point in otlp_decode.metric_points(received):
        if point["name"] == "http.server.request.duration":
            attributes = point["point"]["attributes"]
            counts[attributes.get("apitally.consumer.identifier")] += int(point["point"]["count"])
    assert counts == sent
    startups = [
        e["resource"]["service.instance.id"] for e in otlp_decode.events(received, "apitally.app.startup")
    ]
    assert len(startups) == len(set(startups)) >= 2  # the workers (and the master) announce once each
    assert {s["resource"]["service.instance.id"] for s in spans} <= set(startups)


def test_a_megabyte_of_spans_leaves_before_the_cycle(stub: IngestStub, tmp_path: Path) -> None:
    dest = destination(stub.url, tmp_path, log_response_body=True)
    body = json.dumps({"pad": "y" * 40_000})
    dest.export(
        [record(trace_id=f"{i:032x}", response_body=body, response_size=len(body)) for i in range(1, 31)]
    )
    # no flush, and the first cycle is seconds away: the full request went to the sender at once
    poll_until(lambda: otlp_decode.spans(stub.requests()), 5, "the first megabyte of spans")
    first = next(r for r in stub.requests() if r.path == "/v1/traces")
    assert 20 <= len(otlp_decode.spans([first])) < 30  # about a megabyte: the rest waits for the cycle
    dest.shutdown(5)
    assert len(otlp_decode.spans(stub.requests())) == 30


def test_too_many_combinations_are_counted_and_told(
    stub: IngestStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from spanlytics.destinations.apitally import otlp_metrics

    monkeypatch.setattr(otlp_metrics, "MAX_COMBINATIONS", 3)
    dest = destination(stub.url, tmp_path)
    with caplog.at_level(logging.WARNING, "spanlytics"):
        dest.export([record(consumer=Consumer(f"request-{i}")) for i in range(5)])
        dest.force_flush(5)
    assert "2 request(s) were not counted" in caplog.text
    points = [
        p for p in otlp_decode.metric_points(stub.requests()) if p["name"] == "http.server.request.duration"
    ]
    assert len(points) == 3
    dest.shutdown(5)
