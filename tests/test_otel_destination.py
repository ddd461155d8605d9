"""destinations/otel_signals: records -> log records and consumer histograms, with the real SDK
(in-memory exporter and reader) as the app's providers. The end-to-end tests against a
loopback OTLP receiver are in tests/test_otel_signals.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry._logs import NoOpLoggerProvider, SeverityNumber
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from spanlytics.config import Settings
from spanlytics.consumer.value import Consumer
from spanlytics.destinations.otel_signals import OtelOptions
from spanlytics.destinations.otel_signals.consumer_metrics import (
    DURATION,
    DURATION_BUCKETS_S,
    OTHER,
    REQUEST_SIZE,
    RESPONSE_SIZE,
    ConsumerSlots,
)
from spanlytics.destinations.otel_signals.destination import OtelDestination, is_placeholder
from spanlytics.destinations.otel_signals.log_records import EVENT_NAME, HAS_EVENT_NAME, log_record
from spanlytics.destinations.registry import KNOWN_DESTINATIONS, build_destinations
from spanlytics.record import ExceptionInfo, MaskedField
from tests.support.records import make_record

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def _record(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "start_time_ns": 1_700_000_000_123_456_789,
        "duration_ms": 42.0,
        "query": "page=2&api_key=[masked]",
        "client_ip": "10.1.2.3",
        "user_agent": "curl/8",
        "host": "api.test",
        "request_headers": (("content-type", "application/json"), ("x-api-key", "[masked]")),
        "response_headers": (("set-cookie", "a=[masked]"), ("set-cookie", "b=1")),
        "request_content_type": "application/json",
        "request_body": '{"password":"[masked]","qty":2}',
        "response_body": '{"id":7}',
        "request_size": 31,
        "response_size": 8,
        "consumer": Consumer("acme", name="Acme Corp", group="enterprise"),
        "masked": (MaskedField("request.body.password", "password"),),
    }
    values.update(overrides)
    return make_record(**values)


def test_options_from_keywords_and_variables(caplog: pytest.LogCaptureFixture) -> None:
    assert "otel" in KNOWN_DESTINATIONS
    assert OtelOptions.of(Settings.resolve()) == OtelOptions(logs=True, metrics=True, max_consumers=100)
    settings = Settings.resolve(env={"SPANLYTICS_OTEL_MAX_CONSUMERS": "5", "SPANLYTICS_OTEL_LOGS": "false"})
    assert OtelOptions.of(settings) == OtelOptions(logs=False, max_consumers=5)
    assert OtelOptions.of(Settings.resolve(otel_max_consumers=7, otel_metrics=False)).max_consumers == 7
    with caplog.at_level(logging.WARNING, "spanlytics"):
        settings = Settings.resolve(env={"SPANLYTICS_OTEL_MAX_CONSUMERS": "-3sk_live"})
    assert OtelOptions.of(settings).max_consumers == 100
    assert "SPANLYTICS_OTEL_MAX_CONSUMERS" in caplog.text and "sk_live" not in caplog.text
    with pytest.raises(ValueError, match="otel_max_consumers"):
        Settings.resolve(otel_max_consumers=-1)
    [destination] = build_destinations(Settings.resolve(destinations="otel"))
    assert isinstance(destination, OtelDestination)


def test_a_record_becomes_a_correlated_log_record_with_semconv_attributes() -> None:
    log = log_record(_record(status=201))
    assert (log.trace_id, log.span_id) == (int(TRACE_ID, 16), int(SPAN_ID, 16))
    assert log.trace_flags is not None and log.trace_flags.sampled
    unsampled = log_record(_record(status=201, sampled=False))  # the head sampler dropped its trace
    assert unsampled.trace_flags is not None and not unsampled.trace_flags.sampled
    assert unsampled.trace_id == log.trace_id
    assert log.timestamp == 1_700_000_000_123_456_789
    assert (log.severity_number, log.severity_text) == (SeverityNumber.INFO, "INFO")
    assert HAS_EVENT_NAME  # both supported APIs (1.43, 1.45) take it
    assert log.event_name == EVENT_NAME == "spanlytics.request"
    assert log.attributes == {
        "http.request.method": "POST",
        "http.route": "/items",
        "url.path": "/items",
        "url.query": "page=2&api_key=[masked]",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "http.response.status_code": 201,
        "http.request.body.size": 31,
        "http.response.body.size": 8,
        "server.address": "api.test",
        "client.address": "10.1.2.3",
        "user_agent.original": "curl/8",
        "spanlytics.consumer.id": "acme",
        "spanlytics.consumer.name": "Acme Corp",
        "spanlytics.consumer.group": "enterprise",
        "spanlytics.duration_ms": 42.0,
        "spanlytics.record_id": "r1",
    }
    assert log.body == {
        "request": {
            "headers": {"content-type": ["application/json"], "x-api-key": ["[masked]"]},
            "content_type": "application/json",
            "body": '{"password":"[masked]","qty":2}',
            "body_truncated": False,
        },
        "response": {
            "headers": {"set-cookie": ["a=[masked]", "b=1"]},
            "body": '{"id":7}',
            "body_truncated": False,
        },
        "masked": [{"path": "request.body.password", "rule": "password"}],
    }


def test_severity_follows_the_status_and_errors_carry_their_type() -> None:
    assert log_record(_record(status=404)).severity_number == SeverityNumber.WARN
    failed = log_record(_record(status=None, exception=ExceptionInfo("ValueError", "bad", "Traceback...")))
    assert (failed.severity_number, failed.severity_text) == (SeverityNumber.ERROR, "ERROR")
    assert failed.attributes is not None and failed.attributes["error.type"] == "ValueError"
    assert isinstance(failed.body, dict) and failed.body["exception"]["type"] == "ValueError"
    bare = log_record(_record(status=503, consumer=None, query="", request_headers=(), request_body=None))
    assert bare.attributes is not None and bare.attributes["error.type"] == "503"
    assert "spanlytics.consumer.id" not in bare.attributes and "url.query" not in bare.attributes
    assert bare.body == {
        "request": {"content_type": "application/json"},
        "response": {
            "headers": {"set-cookie": ["a=[masked]", "b=1"]},
            "body": '{"id":7}',
            "body_truncated": False,
        },
        "masked": [{"path": "request.body.password", "rule": "password"}],
    }


def test_consumer_slots_never_flip_a_series() -> None:
    slots = ConsumerSlots(2)
    seen = [slots.label(c) for c in ("a", "b", "c", "a", "c", "b", "d")]
    assert seen == ["a", "b", OTHER, "a", OTHER, "b", OTHER]
    assert [ConsumerSlots(0).label("a")] == [OTHER]


class Providers:
    def __init__(self) -> None:
        self.logs = InMemoryLogRecordExporter()
        self.logger_provider = LoggerProvider()
        self.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.logs))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def histograms(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: list(metric.data.data_points)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        }


def test_the_destination_emits_one_log_record_and_histogram_points_per_record() -> None:
    providers = Providers()
    destination = OtelDestination(
        OtelOptions(max_consumers=2),
        logger_provider=providers.logger_provider,
        meter_provider=providers.meter_provider,
    )
    consumers = ["a", "b", "c", "a", None, "d", "b"]
    records = [
        _record(record_id=str(i), consumer=Consumer(c, group="g") if c else None, status=200 + (i % 2) * 300)
        for i, c in enumerate(consumers)
    ]
    destination.export(records)
    assert destination.force_flush()
    logs = providers.logs.get_finished_logs()
    assert [log.log_record.attributes["spanlytics.record_id"] for log in logs] == [str(i) for i in range(7)]  # type: ignore[index]
    assert {log.instrumentation_scope.name for log in logs if log.instrumentation_scope} == {"spanlytics"}
    histograms = providers.histograms()
    assert set(histograms) == {DURATION, REQUEST_SIZE, RESPONSE_SIZE}
    counts = {
        (p.attributes.get("spanlytics.consumer.id"), p.attributes["http.response.status_code"]): p.count
        for p in histograms[DURATION]
    }
    assert counts == {
        ("a", 200): 1,
        ("a", 500): 1,
        ("b", 500): 1,
        ("b", 200): 1,
        (OTHER, 200): 1,
        (None, 200): 1,
        (OTHER, 500): 1,
    }
    point = histograms[DURATION][0]
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS_S
    assert point.sum == pytest.approx(0.042)
    assert {p.attributes["http.route"] for p in histograms[REQUEST_SIZE]} == {"/items"}
    destination.shutdown()
    destination.export(records)  # after shutdown: dropped and counted, nothing emitted
    assert len(providers.logs.get_finished_logs()) == 7
    assert destination.dropped == {"logs": 7, "metrics": 7}


def test_without_providers_it_warns_once_per_signal_and_counts_the_drops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert is_placeholder(NoOpLoggerProvider()) and is_placeholder(NoOpMeterProvider())
    destination = OtelDestination(logger_provider=NoOpLoggerProvider(), meter_provider=NoOpMeterProvider())
    with caplog.at_level(logging.WARNING, "spanlytics"):
        destination.export([_record(), _record()])
        destination.export([_record()])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert "OTEL_LOGS_EXPORTER" in warnings[0] and "OTEL_METRICS_EXPORTER" in warnings[1]
    assert destination.dropped == {"logs": 3, "metrics": 3}
    assert destination.force_flush()  # nothing found: nothing to flush


def test_only_the_signals_asked_for() -> None:
    providers = Providers()
    destination = OtelDestination(
        OtelOptions(metrics=False),
        logger_provider=providers.logger_provider,
        meter_provider=providers.meter_provider,
    )
    destination.export([_record()])
    assert len(providers.logs.get_finished_logs()) == 1
    data = providers.reader.get_metrics_data()
    assert data is None or not data.resource_metrics
