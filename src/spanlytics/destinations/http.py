"""Generic HTTP destination: masked records as a JSON array, POSTed to a URL of yours.

For a collector or webhook you run yourself::

    SPANLYTICS_DESTINATIONS=local,http
    SPANLYTICS_HTTP_URL=https://analytics.internal.example/ingest
    SPANLYTICS_HTTP_HEADERS="Authorization=Bearer abc123"

Each element is one record with every :class:`~spanlytics.RequestRecord` field; ``id`` is
the record id, stable across retries, so a receiver can drop duplicates. Delivery (queue,
retries, spool) is :mod:`spanlytics.delivery.sender`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

from spanlytics._json import dumps
from spanlytics.delivery.sender import Sender
from spanlytics.delivery.settings import SenderSettings
from spanlytics.delivery.spool import Batch, json_array_batches
from spanlytics.record import RequestRecord, record_fields


def record_to_json(record: RequestRecord) -> dict[str, Any]:
    data = record_fields(record)
    data["id"] = data.pop("record_id")
    if record.consumer is not None:
        data["consumer"] = asdict(record.consumer)
    if record.exception is not None:
        data["exception"] = asdict(record.exception)
    data["request_headers"] = [list(h) for h in record.request_headers]
    data["response_headers"] = [list(h) for h in record.response_headers]
    data["masked"] = [[m.path, m.rule] for m in record.masked]
    return data


class JsonRecordsEncoder:
    """Records -> JSON array batches of at most ``max_records`` and about ``max_bytes``."""

    def __init__(self, max_records: int = 500, max_bytes: int = 1024 * 1024) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes

    def encode(self, records: Sequence[RequestRecord]) -> Iterator[Batch]:
        items = (dumps(record_to_json(r)) for r in records)
        return json_array_batches(items, self.max_records, self.max_bytes)


class HttpDestination:
    """POSTs JSON batches of masked records to ``settings.base_url``."""

    name = "http"

    def __init__(self, settings: SenderSettings, encoder: JsonRecordsEncoder | None = None) -> None:
        self.encoder = encoder or JsonRecordsEncoder()
        self.sender = Sender(self.name, settings)

    def export(self, records: Sequence[RequestRecord]) -> None:
        for batch in self.encoder.encode(records):
            self.sender.submit(batch)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return self.sender.force_flush(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        self.sender.shutdown(timeout_s)
