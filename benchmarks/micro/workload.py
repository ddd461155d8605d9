"""The inputs every micro-benchmark shares, built with ``benchmarks/bench_background.py``'s builders.

Each request is a POST with 1 KB JSON bodies both ways; the request body holds a password,
the response body an access token, the Authorization header a bearer token and the query
an ``api_key``. :data:`SECRETS` are the parts of those values that must never survive masking.
"""

from __future__ import annotations

import dataclasses

from benchmarks.bench_background import json_body, make_inputs
from spanlytics.consumer import Consumer
from spanlytics.masking import Masker
from spanlytics.record import RequestRecord, from_span

BATCH = 512
"""Records per batch, as the background worker exports them."""

CONSUMER = Consumer("acme-prod", name="Acme Corp", group="enterprise")
"""ReadMe logs only identified requests (or an anonymous group), so records carry a consumer."""

SECRETS = ("s3cr3t-", "sk_live_", "qs-secret")


def leaked(text: str | bytes | None) -> list[str]:
    """The secrets that appear in ``text`` (an empty list is what masking must achieve)."""
    if text is None:
        return []
    found = text.decode() if isinstance(text, bytes) else text
    return [secret for secret in SECRETS if secret in found]


def records_for(count: int) -> list[RequestRecord]:
    """``count`` unmasked records of identified requests, secrets in headers, query and bodies."""
    records = [from_span(span, capture.snapshot(), consumer=CONSUMER) for span, capture in make_inputs(count)]
    assert all(record is not None for record in records)
    return [record for record in records if record is not None]


def without_body_secrets(records: list[RequestRecord]) -> list[RequestRecord]:
    """The same records with bodies whose field names match no masking rule (the fast path).

    The Authorization header and the ``api_key`` query parameter are still there to mask.
    """
    return [
        dataclasses.replace(
            record,
            request_body=json_body(i, "reference").decode(),
            response_body=json_body(i, "etag").decode(),
        )
        for i, record in enumerate(records)
    ]


def masked(records: list[RequestRecord]) -> list[RequestRecord]:
    masker = Masker()
    return [masker.mask_record(record) for record in records]
