"""A request record for tests of the stages after the record stage (masking, settings)."""

from __future__ import annotations

from typing import Any

from spanlytics.record import RequestRecord


def make_record(**overrides: Any) -> RequestRecord:
    """A POST /items record; a given ``query`` is also in the ``url`` unless a url is given."""
    values: dict[str, Any] = {
        "record_id": "r1",
        "trace_id": "0" * 32,
        "span_id": "0" * 16,
        "start_time_ns": 1,
        "duration_ms": 1.0,
        "method": "POST",
        "route": "/items",
        "path": "/items",
        "url": "http://api.test/items",
        "query": "",
        "status": 200,
    }
    values.update(overrides)
    if values["query"] and "url" not in overrides:
        values["url"] = f"http://api.test/items?{values['query']}"
    return RequestRecord(**values)
