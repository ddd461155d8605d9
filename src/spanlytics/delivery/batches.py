"""What a destination's encoder hands to the sender: :class:`Batch`, one encoded request body,
and :func:`json_array_batches`, which cuts encoded JSON values into JSON-array batches.

>>> [b.body for b in json_array_batches([b'{"a":1}', b'{"b":2}', b'{"c":3}'], 2, 1024)]
[b'[{"a":1},{"b":2}]', b'[{"c":3}]']
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = ["Batch", "json_array_batches"]


@dataclass(frozen=True, slots=True)
class Batch:
    """One encoded request body for a destination."""

    body: bytes
    records: int
    path: str = ""
    content_type: str = "application/json"
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: float = field(default_factory=time.time)


def json_array_batches(
    items: Iterable[bytes], max_records: int, max_bytes: int, path: str = ""
) -> Iterator[Batch]:
    """Encoded JSON values -> JSON-array batches of at most ``max_records`` values and, unless
    a single value is larger, ``max_bytes`` bytes."""
    batch: list[bytes] = []
    size = 2  # the brackets
    for item in items:
        if batch and (len(batch) >= max_records or size + len(item) + 1 > max_bytes):
            yield Batch(b"[" + b",".join(batch) + b"]", len(batch), path)
            batch, size = [], 2
        batch.append(item)
        size += len(item) + 1
    if batch:
        yield Batch(b"[" + b",".join(batch) + b"]", len(batch), path)
