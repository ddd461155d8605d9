"""Shared fixtures: in-process OTel pipelines and real server processes."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import spanlytics.testing
from spanlytics.destinations.local import iter_records
from spanlytics.record import RequestRecord

# a plugin module that test modules also import from: rewrite its asserts before they do
pytest.register_assert_rewrite("tests.support.dashboard")


class Pipeline:
    """A TracerProvider with a user's in-memory exporter and (optionally) spanlytics."""

    def __init__(self, provider: TracerProvider, user_exporter: InMemorySpanExporter, db: Path) -> None:
        self.provider = provider
        self.user_exporter = user_exporter
        self.db = db
        self.processor: Any = None

    def records(self) -> list[RequestRecord]:
        assert self.processor is not None
        assert self.processor.force_flush()
        return sorted(iter_records(self.db), key=lambda r: r.start_time_ns)


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    """A fresh SDK provider with the user's exporter first, then spanlytics on a temp store."""
    import spanlytics

    provider = TracerProvider()
    user_exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(user_exporter))
    pipe = Pipeline(provider, user_exporter, tmp_path / "spanlytics.db")
    pipe.processor = spanlytics.configure(
        tracer_provider=provider, local_path=str(pipe.db), flush_interval_s=0.05
    )
    yield pipe
    provider.shutdown()


@pytest.fixture(autouse=True)
def _isolated_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts without SPANLYTICS_* variables and with spanlytics as a fresh process
    has it (no pipeline, no capture, default capture options, fresh warning throttles)."""
    for name in list(os.environ):
        if name.startswith("SPANLYTICS_"):
            monkeypatch.delenv(name)
    spanlytics.testing.reset()
    yield
    spanlytics.testing.reset()


def db_rows(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM requests ORDER BY start_time_ns")]


def db_bytes(path: Path) -> bytes:
    """Every byte SQLite keeps for ``path``: the main file, the WAL and the shared memory."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            data += part.read_bytes()
    return data
