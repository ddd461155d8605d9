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
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from spanlytics._json import dumps
from spanlytics._setting_fields import parse_bool, parse_csv, parse_optional_str, setting
from spanlytics.delivery.batches import Batch, json_array_batches
from spanlytics.delivery.settings import SenderSettings, header_problem
from spanlytics.destinations.options import DestinationOptions
from spanlytics.record import RequestRecord, record_fields

if TYPE_CHECKING:
    from spanlytics.config import Settings


def _header_entries_problem(entries: Sequence[object]) -> str | None:
    """Why ``Name=Value`` entries would fail on the wire (never quoting a value: a secret)."""
    for entry in entries:
        if not isinstance(entry, str):
            return "expected Name=Value strings"
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            return "expected Name=Value entries separated by commas"
        problem = header_problem(name.strip(), value.strip())
        if problem is not None:
            return problem
    return None


def _headers(raw: str) -> tuple[str, ...]:
    entries = parse_csv(raw)
    problem = _header_entries_problem(entries)
    if problem is not None:
        raise ValueError(problem)
    return entries


@dataclass(frozen=True)
class HttpOptions(DestinationOptions):
    """The http destination's options (``http_*``, ``SPANLYTICS_HTTP_*``)."""

    name: ClassVar[str] = "http"
    required: ClassVar[str | None] = "url"

    url: str | None = setting(None, parse_optional_str)  # where the batches are POSTed
    headers: tuple[str, ...] = setting((), _headers, names=True, secret=True)  # Name=Value entries
    gzip: bool = setting(False, parse_bool)

    def problems(self) -> dict[str, str | None]:
        problems = super().problems()
        if isinstance(self.headers, str):  # (resolve() parses a string as the variable)
            problems["headers"] = "expected Name=Value strings"
        else:
            problems["headers"] = _header_entries_problem(self.headers)
        return problems

    def header_pairs(self) -> tuple[tuple[str, str], ...]:
        """The ``Name=Value`` entries as (name, value) pairs."""
        pairs = (entry.partition("=") for entry in self.headers)
        return tuple((name.strip(), value.strip()) for name, _, value in pairs)


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
        # requests (behind Sender) is imported when a remote destination is built, not with spanlytics
        from spanlytics.delivery.sender import Sender

        self.encoder = encoder or JsonRecordsEncoder()
        self.sender = Sender(self.name, settings)

    def export(self, records: Sequence[RequestRecord]) -> None:
        for batch in self.encoder.encode(records):
            self.sender.submit(batch)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        return self.sender.force_flush(timeout_s)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        self.sender.shutdown(timeout_s)


def build_http(settings: Settings, options: HttpOptions) -> HttpDestination:
    """The registry's factory: URL, headers and gzip from the options, the rest from the core."""
    assert options.url is not None  # the registry builds it only with a URL
    sender = SenderSettings.from_settings(settings, options.url, options.header_pairs(), options.gzip)
    encoder = JsonRecordsEncoder(settings.delivery_batch_records, settings.delivery_batch_bytes)
    return HttpDestination(sender, encoder)
