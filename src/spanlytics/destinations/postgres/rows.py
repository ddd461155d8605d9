"""A batch of records as PostgreSQL's COPY text format: what the spool holds and what the
transport streams to the server as it is, without decoding it again.

One line per record, the columns of :data:`COLUMNS` separated by tabs, ``\\N`` for NULL,
backslash, tab, newline and carriage return escaped. PostgreSQL's text cannot hold a NUL
character: one in a record (a binary body read as text) is stored as U+FFFD, and a lone
surrogate as ``?``, rather than fail the batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from spanlytics.delivery.batches import Batch
from spanlytics.destinations.local.schema import COLUMNS, to_row

if TYPE_CHECKING:
    from spanlytics.record import RequestRecord

__all__ = ["COLUMNS", "FORMAT", "copy_batches", "copy_line"]

FORMAT = "copy-v1"
"""The batch's ``path``: the layout of its lines (the columns of schema version 1)."""
CONTENT_TYPE = "text/tab-separated-values"


def _text(value: str) -> str:
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\t" in value:
        value = value.replace("\t", "\\t")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if "\r" in value:
        value = value.replace("\r", "\\r")
    if "\0" in value:
        value = value.replace("\0", "\ufffd")
    return value


def copy_line(record: RequestRecord) -> str:
    """One record as a COPY text line (with its newline)."""
    fields = []
    for value in to_row(record):
        if value is None:
            fields.append("\\N")
        elif isinstance(value, str):
            fields.append(_text(value))
        else:  # int or float: repr round-trips a double exactly
            fields.append(repr(value))
    return "\t".join(fields) + "\n"


def copy_batches(records: Sequence[RequestRecord], max_records: int, max_bytes: int) -> Iterator[Batch]:
    """Records -> batches of at most ``max_records`` lines and, unless one line is larger,
    ``max_bytes`` bytes."""
    lines: list[bytes] = []
    size = 0
    for record in records:
        line = copy_line(record).encode("utf-8", "replace")
        if lines and (len(lines) >= max_records or size + len(line) > max_bytes):
            yield Batch(b"".join(lines), len(lines), FORMAT, CONTENT_TYPE)
            lines, size = [], 0
        lines.append(line)
        size += len(line)
    if lines:
        yield Batch(b"".join(lines), len(lines), FORMAT, CONTENT_TYPE)
