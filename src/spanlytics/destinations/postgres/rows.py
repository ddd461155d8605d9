"""A batch of records as PostgreSQL's COPY text format: what the spool holds and what the
transport streams to the server as it is, without decoding it again.

A batch (format :data:`FORMAT`) is one line of JSON, the rollups of its records
(:func:`~spanlytics.destinations.postgres.batch_rollups.rollups_json`, what the transport adds
to the rollup tables when every record is new to the store), then the COPY lines; a batch of
:data:`LEGACY_FORMAT` (spooled by an earlier version) is the COPY lines alone. Batches that
wait behind a slow database are joined (:func:`merge_batches`): the rollups line of a joined
batch is a JSON array of its parts' documents, added up when it is written.

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
from spanlytics.destinations.postgres.batch_rollups import rollups_json
from spanlytics.destinations.rollups import Rollups

if TYPE_CHECKING:
    from spanlytics.record import RequestRecord

__all__ = ["COLUMNS", "FORMAT", "LEGACY_FORMAT", "copy_batches", "copy_line", "merge_batches", "split_batch"]

FORMAT = "copy-v2"
"""The batch's ``path``: its layout (the rollups line, then the columns of schema version 1)."""
LEGACY_FORMAT = "copy-v1"
"""The COPY lines alone (the columns of schema version 1)."""
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


def _batch(records: Sequence[RequestRecord], lines: list[bytes]) -> Batch:
    rollups = rollups_json(Rollups.of(records)).encode("utf-8")
    return Batch(b"".join([rollups, b"\n", *lines]), len(lines), FORMAT, CONTENT_TYPE)


def copy_batches(records: Sequence[RequestRecord], max_records: int, max_bytes: int) -> Iterator[Batch]:
    """Records -> batches of at most ``max_records`` lines and, unless one line is larger,
    ``max_bytes`` bytes of lines."""
    lines: list[bytes] = []
    size = start = 0
    for i, record in enumerate(records):
        line = copy_line(record).encode("utf-8", "replace")
        if lines and (len(lines) >= max_records or size + len(line) > max_bytes):
            yield _batch(records[start:i], lines)
            lines, size, start = [], 0, i
        lines.append(line)
        size += len(line)
    if lines:
        yield _batch(records[start:], lines)


def split_batch(path: str, body: bytes) -> tuple[str | None, memoryview]:
    """A batch's rollups document (None in a :data:`LEGACY_FORMAT` batch) and its COPY lines."""
    if path == LEGACY_FORMAT:
        return None, memoryview(body)
    end = body.index(b"\n")
    return body[:end].decode("utf-8"), memoryview(body)[end + 1 :]


def _documents(header: bytes) -> bytes:
    """A rollups line as the comma-separated documents it holds (one, or an array's)."""
    return header[1:-1] if header.startswith(b"[") else header


def merge_batches(queued: Batch, new: Batch, *, max_records: int, max_bytes: int) -> Batch | None:
    """``queued`` and ``new`` as one batch (None when that would exceed the caps, or either is
    of another format): their rollups lines as one array, then their COPY lines. Bytes are
    only copied, never decoded: the sender calls this with its queue locked."""
    if queued.path != FORMAT or new.path != FORMAT:
        return None
    if queued.records + new.records > max_records or len(queued.body) + len(new.body) > max_bytes:
        return None
    q_end, n_end = queued.body.index(b"\n"), new.body.index(b"\n")
    header = b"[" + _documents(queued.body[:q_end]) + b"," + _documents(new.body[:n_end]) + b"]"
    body = b"".join((header, queued.body[q_end:], new.body[n_end + 1 :]))
    return Batch(body, queued.records + new.records, FORMAT, CONTENT_TYPE, created=queued.created)
