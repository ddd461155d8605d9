"""``CapturedRequest``: what capture hands on to the later stages, frozen.

The capture middlewares fill a mutable :class:`~spanlytics.capture.store.Capture` on the
request path; the background worker turns a finished one into this value once
(:meth:`~spanlytics.capture.store.Capture.snapshot`), and the consumer resolver and the
record stage read only the value. It imports nothing of spanlytics.
"""

from __future__ import annotations

from typing import NamedTuple

Headers = tuple[tuple[str, str], ...]


class CapturedRequest(NamedTuple):
    """One request/response as the capture middleware saw it.

    A named tuple rather than a frozen dataclass (OpenTelemetry's ``SpanContext`` is a tuple
    too): it is built once per request on the worker, and a frozen dataclass's ``__init__``
    sets each field through ``object.__setattr__``, which the record stage's throughput in
    ``benchmarks/bench_background.py`` feels.

    Header names are lower-case, values as sent. Bodies hold at most the capture's cap
    (``*_truncated`` says when more was sent); the sizes are the true byte counts. The
    ``*_consumer`` fields are raw consumer hints, unvalidated: what ``set_consumer`` gave,
    what the ``identify_consumer`` callback returned, what the app left in its request
    state, and the ``spanlytics.consumer.id`` baggage value.
    """

    method: str
    path: str
    query: str
    scheme: str
    request_headers: Headers
    response_headers: Headers
    status: int | None
    route: str | None
    client_ip: str | None
    http_version: str | None
    bodies: bool
    """Whether bodies were captured at all (``capture_bodies``)."""
    request_body: bytes
    response_body: bytes
    request_size: int
    response_size: int
    request_truncated: bool
    response_truncated: bool
    end_time_ns: int
    """When the last response byte was handed to the server (0: not finished)."""
    explicit_consumer: object = None
    callback_consumer: object = None
    state_consumer: object = None
    baggage_consumer: str | None = None

    def header(self, name: str) -> str | None:
        """The first request header called ``name`` (lower-case), if any."""
        return first_header(self.request_headers, name)

    def response_header(self, name: str) -> str | None:
        return first_header(self.response_headers, name)


def first_header(headers: Headers, name: str) -> str | None:
    """The value of the first header called ``name`` (lower-case), if any."""
    for key, value in headers:
        if key == name:
            return value
    return None
