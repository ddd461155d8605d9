"""The background path stage by stage: span -> record -> masked record -> each destination's encoding.

Per-record stages cycle through 512 different requests; batch stages take the batch size in
their name. Every benchmark checks its last output, so none can silently measure nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.micro.workload import BATCH, leaked
from spanlytics.capture.store import Capture
from spanlytics.destinations.apitally import (
    MAX_LOG_FILE_BYTES,
    Aggregator,
    ApitallyOptions,
    LogFile,
    RequestLogEncoder,
    decode_log,
)
from spanlytics.destinations.http import JsonRecordsEncoder
from spanlytics.destinations.local import LocalStore, iter_records
from spanlytics.destinations.readme import ReadmeEncoder
from spanlytics.masking import Masker
from spanlytics.record import MaskedField, RequestRecord, from_span

_T = TypeVar("_T")

ENCODER_BATCH = 100  # ReadMe's SDKs send 100 logs per request; the http encoder gets the same
STORE_ROUNDS = 30


def cycling(items: list[_T]) -> Callable[[], _T]:
    return itertools.cycle(items).__next__


def record_leaks(record: RequestRecord, bodies: bool = True) -> list[str]:
    texts = (record.url, record.query, *((record.request_body, record.response_body) if bodies else ()))
    headers = (value for _, value in (*record.request_headers, *record.response_headers))
    return [secret for text in (*texts, *headers) for secret in leaked(text)]


# --- record -------------------------------------------------------------------------------


@pytest.mark.benchmark(group="record")
def test_from_span(benchmark: BenchmarkFixture, inputs: list[tuple[ReadableSpan, Capture]]) -> None:
    # the background path's record stage: the capture's frozen snapshot, then the record
    next_input = cycling(inputs)

    def record_one() -> RequestRecord | None:
        span, capture = next_input()
        return from_span(span, capture.snapshot())

    record = benchmark(record_one)
    assert record is not None
    assert (record.method, record.route, record.status) == ("POST", "/orders/{order_id}", 201)
    assert (record.request_size, record.response_size) == (1024, 1024)
    assert record.request_body is not None and '"password": "s3cr3t-' in record.request_body


# --- masking ------------------------------------------------------------------------------


@pytest.mark.benchmark(group="mask")
def test_mask_record_secrets_in_both_bodies(
    benchmark: BenchmarkFixture, records: list[RequestRecord]
) -> None:
    masker = Masker()
    next_record = cycling(records)
    masked = benchmark(lambda: masker.mask_record(next_record()))
    assert masked.request_body is not None and '"password":"[masked]"' in masked.request_body
    assert masked.response_body is not None and '"access_token":"[masked]"' in masked.response_body
    assert record_leaks(masked) == []
    assert {m.path for m in masked.masked} == {
        "request.headers.authorization",
        "request.query.api_key",
        "request.body.password",
        "response.body.access_token",
    }


@pytest.mark.benchmark(group="mask")
def test_mask_record_bodies_without_secrets(
    benchmark: BenchmarkFixture, records_without_body_secrets: list[RequestRecord]
) -> None:
    masker = Masker()
    next_record = cycling(records_without_body_secrets)

    def mask() -> tuple[RequestRecord, RequestRecord]:
        record = next_record()
        return record, masker.mask_record(record)

    record, masked = benchmark(mask)
    # The fast path hands the very same body strings back; headers and query are still masked.
    assert masked.request_body is record.request_body and masked.response_body is record.response_body
    assert {m.path for m in masked.masked} == {"request.headers.authorization", "request.query.api_key"}
    assert record_leaks(masked, bodies=False) == []  # the bodies' "s3cr3t-" values are under harmless names


@pytest.mark.benchmark(group="mask")
def test_mask_headers(benchmark: BenchmarkFixture, records: list[RequestRecord]) -> None:
    masker = Masker()
    headers = records[0].request_headers
    masked, masks = benchmark(masker.mask_headers, headers, "request.headers")
    assert dict(masked)["authorization"] == "[masked]"
    assert masks == [MaskedField("request.headers.authorization", "header:default")]
    assert [name for name, _ in masked] == [name for name, _ in headers]


# --- ReadMe -------------------------------------------------------------------------------


@pytest.mark.benchmark(group="readme")
def test_readme_entry(benchmark: BenchmarkFixture, masked_records: list[RequestRecord]) -> None:
    encoder = ReadmeEncoder()
    next_record = cycling(masked_records)
    entry = benchmark(lambda: encoder.entry(next_record()))
    assert entry is not None
    har = entry["request"]["log"]["entries"][0]
    assert '"password":"[masked]"' in har["request"]["postData"]["text"]
    assert {"name": "authorization", "value": "[masked]"} in har["request"]["headers"]
    assert leaked(json.dumps(entry)) == []


@pytest.mark.benchmark(group="readme")
def test_readme_encode_batch_of_100(benchmark: BenchmarkFixture, masked_records: list[RequestRecord]) -> None:
    encoder = ReadmeEncoder()
    batch = masked_records[:ENCODER_BATCH]
    batches = benchmark(lambda: list(encoder.encode(batch, ENCODER_BATCH, 1 << 20)))
    assert [b.records for b in batches] == [ENCODER_BATCH]
    assert len(json.loads(batches[0].body)) == ENCODER_BATCH
    assert b'"password\\":\\"[masked]\\"' in batches[0].body and leaked(batches[0].body) == []


# --- generic HTTP -------------------------------------------------------------------------


@pytest.mark.benchmark(group="http")
def test_http_encode_batch_of_100(benchmark: BenchmarkFixture, masked_records: list[RequestRecord]) -> None:
    encoder = JsonRecordsEncoder()
    batch = masked_records[:ENCODER_BATCH]
    batches = benchmark(lambda: list(encoder.encode(batch)))
    assert [b.records for b in batches] == [ENCODER_BATCH]
    items = json.loads(batches[0].body)
    assert [item["id"] for item in items] == [r.record_id for r in batch]
    assert b'"password\\":\\"[masked]\\"' in batches[0].body and leaked(batches[0].body) == []


# --- local store --------------------------------------------------------------------------


@pytest.mark.benchmark(group="local")
def test_local_store_export_batch_of_512(
    benchmark: BenchmarkFixture, masked_records: list[RequestRecord], tmp_path: Path
) -> None:
    # Fresh record ids for every round: the store ignores ids it already holds (INSERT OR IGNORE).
    fresh = [
        [dataclasses.replace(r, record_id=str(uuid.uuid4())) for r in masked_records]
        for _ in range(STORE_ROUNDS + 1)
    ]
    path = tmp_path / "bench.db"
    store = LocalStore(path)
    try:  # the warm-up round opens the file and creates the schema
        benchmark.pedantic(
            store.export, setup=lambda: ((fresh.pop(),), {}), rounds=STORE_ROUNDS, warmup_rounds=1
        )
    finally:
        store.shutdown()
    assert store.dropped == 0
    stored = list(iter_records(path))
    exported = STORE_ROUNDS + 1 - len(fresh)  # one with --benchmark-disable
    assert exported > 0 and len(stored) == exported * BATCH
    assert stored[0].request_body is not None and '"password":"[masked]"' in stored[0].request_body
    assert record_leaks(stored[-1]) == []


# --- Apitally -----------------------------------------------------------------------------


@pytest.mark.benchmark(group="apitally")
def test_apitally_aggregate_batch_of_512(
    benchmark: BenchmarkFixture, masked_records: list[RequestRecord]
) -> None:
    aggregator = Aggregator()
    benchmark(aggregator.add, masked_records)
    payload = aggregator.drain()
    [counted] = payload["requests"]
    assert (counted["consumer"], counted["method"], counted["path"], counted["status_code"]) == (
        "acme-prod",
        "POST",
        "/orders/{order_id}",
        201,
    )
    assert counted["request_count"] > 0 and counted["request_count"] % BATCH == 0
    assert counted["request_size_sum"] == counted["response_size_sum"] == counted["request_count"] * 1024
    assert payload["consumers"] == [{"identifier": "acme-prod", "name": "Acme Corp", "group": "enterprise"}]


class RotatingLog:
    """The destination's request-log file handling: a fresh file once one reaches about 1 MB."""

    def __init__(self) -> None:
        self.current = LogFile()

    def write(self, item: dict[str, Any]) -> None:
        if self.current.size >= MAX_LOG_FILE_BYTES:
            self.current = LogFile()
        self.current.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode())


@pytest.mark.benchmark(group="apitally")
def test_apitally_request_log_item(benchmark: BenchmarkFixture, masked_records: list[RequestRecord]) -> None:
    options = ApitallyOptions(request_logging=True, log_request_body=True, log_response_body=True)
    encoder = RequestLogEncoder(options)
    log = RotatingLog()
    next_record = cycling(masked_records)

    def log_one() -> dict[str, Any] | None:
        item = encoder.item(next_record())
        if item is not None:
            log.write(item)
        return item

    item = benchmark(log_one)
    assert item is not None and decode_log(log.current.finish())[-1] == item
    request_body = base64.b64decode(item["request"]["body"])
    response_body = base64.b64decode(item["response"]["body"])
    assert b'"password":"[masked]"' in request_body and b'"access_token":"[masked]"' in response_body
    assert leaked(request_body) == leaked(response_body) == leaked(item["request"]["url"]) == []
