"""Shared inputs (built once per session) and capture-store hygiene for the micro-benchmarks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from benchmarks.micro import workload
from spanlytics.capture.store import STORE, Capture
from spanlytics.record import RequestRecord


@pytest.fixture(scope="session")
def inputs() -> list[tuple[ReadableSpan, Capture]]:
    """Finished SDK server spans with their finished captures."""
    return workload.make_inputs(workload.BATCH)


@pytest.fixture(scope="session")
def records() -> list[RequestRecord]:
    """Unmasked records, as ``from_span`` hands them to masking."""
    return workload.records_for(workload.BATCH)


@pytest.fixture(scope="session")
def masked_records(records: list[RequestRecord]) -> list[RequestRecord]:
    """Masked records, as the destinations receive them."""
    batch = workload.masked(records)
    assert not any(workload.leaked(r.request_body) or workload.leaked(r.response_body) for r in batch)
    return batch


@pytest.fixture(scope="session")
def records_without_body_secrets(records: list[RequestRecord]) -> list[RequestRecord]:
    return workload.without_body_secrets(records)


@pytest.fixture(autouse=True)
def _empty_capture_store() -> Iterator[None]:
    """Captures are keyed by span id; none may outlive a benchmark (as in tests/conftest.py)."""
    yield
    while len(STORE):
        STORE._entries.popitem()
