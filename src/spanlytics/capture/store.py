"""Per-request capture state and the bounded side channel that carries it to the pipeline.

The capture middlewares fill a :class:`Capture`; the span processor links it to the HTTP
server span when that span starts (``on_start`` runs in the request's context, where
:func:`current_capture` finds it); the pipeline takes it back by span id once the span has
ended and reads it through a frozen :meth:`Capture.snapshot`. Captured bytes never touch the
span, so other exporters of the same TracerProvider never see them.

The join is symmetric: WSGI servers may end the server span before the response body has
been iterated (Flask ends it in ``teardown_request``), so the pipeline may find a capture
that is not finished yet. It then *parks* the span on the capture, and the middleware hands
it back when the response is done (see :meth:`CaptureStore.park`).
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias, overload

from spanlytics._process import on_reset
from spanlytics.capture.snapshot import CapturedRequest, first_header

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from spanlytics.exclusions import Exclusions

Headers: TypeAlias = tuple[tuple[str, str], ...]

_new_tuple = tuple.__new__

_current: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("spanlytics_capture", default=None)


def current_capture() -> Capture | None:
    """The capture of the request being handled in this context, if any."""
    return _current.get()


def enter_capture(capture: Capture) -> contextvars.Token[Capture | None]:
    return _current.set(capture)


def exit_capture(token: contextvars.Token[Capture | None]) -> None:
    try:
        _current.reset(token)
    except ValueError:  # reset from another context (a server quirk); the value is dropped anyway
        _current.set(None)


class _DeferredHeaders:
    """A header attribute of :class:`Capture` (lower-case names, values as sent), kept in the
    slot ``_<name>`` as assigned: a tuple, or a function returning one, called on first read."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot: Any = getattr(owner, f"_{name}")

    @overload
    def __get__(self, capture: None, owner: type | None = None) -> _DeferredHeaders: ...

    @overload
    def __get__(self, capture: Capture, owner: type | None = None) -> Headers: ...

    def __get__(self, capture: Capture | None, owner: type | None = None) -> Headers | _DeferredHeaders:
        if capture is None:
            return self
        headers = self._slot.__get__(capture)
        if not isinstance(headers, tuple):
            headers = headers()
            self._slot.__set__(capture, headers)
        return headers  # type: ignore[no-any-return]

    def __set__(self, capture: Capture, headers: Headers | Callable[[], Headers]) -> None:
        self._slot.__set__(capture, headers)


class Capture:
    """What the middleware saw of one request/response, bounded by ``limit`` bytes per body.

    Only the request thread or event loop writes to it until :meth:`finish`; the exporter
    reads it afterwards. Body buffers never grow past ``limit``; true sizes are counted.
    """

    __slots__ = (
        "_request_headers",
        "_response_headers",
        "accounted",
        "admitted_by",
        "baggage_consumer",
        "bodies",
        "callback_consumer",
        "client_ip",
        "done",
        "end_time_ns",
        "explicit_consumer",
        "http_version",
        "limit",
        "method",
        "on_done",
        "path",
        "query",
        "request_body",
        "request_size",
        "request_truncated",
        "response_body",
        "response_size",
        "response_truncated",
        "route",
        "scheme",
        "span",
        "span_id",
        "start_time_ns",
        "state_consumer",
        "status",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        scheme: str,
        request_headers: Headers | Callable[[], Headers],
        *,
        bodies: bool,
        limit: int,
        declared_request_size: int | None = None,
        client_ip: str | None = None,
        http_version: str | None = None,
        admitted_by: Exclusions | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.scheme = scheme
        self._request_headers: Headers | Callable[[], Headers] = request_headers
        self.bodies = bodies
        self.limit = limit if bodies else 0
        self.client_ip = client_ip
        self.http_version = http_version
        self.request_body = bytearray()
        self.response_body = bytearray()
        self.request_size = declared_request_size if declared_request_size is not None else 0
        self.response_size = 0
        self.request_truncated = False
        self.response_truncated = False
        self._response_headers: Headers | Callable[[], Headers] = ()
        self.status: int | None = None
        self.route: str | None = None
        # raw consumer hints, validated in the background (spanlytics.consumer.resolve)
        self.explicit_consumer: object = None  # set_consumer(...)
        self.callback_consumer: object = None  # what the identify_consumer callback returned
        self.state_consumer: object = None  # request.state / environ value
        self.baggage_consumer: str | None = None  # spanlytics.consumer.id baggage
        self.span: Span | None = None
        self.span_id: int | None = None
        self.start_time_ns = time.time_ns()
        self.end_time_ns = 0
        self.done = False
        self.accounted = 0
        self.on_done: Callable[[], None] | None = None
        # the exclusions that let this request be captured: the pipeline does not ask again
        self.admitted_by = admitted_by

    # Headers may be given as a function that decodes a copy of the server's raw headers:
    # the request path only copies them, the first reader (the exporter) decodes them once.
    request_headers = _DeferredHeaders()
    response_headers = _DeferredHeaders()

    # -- written on the request path ---------------------------------------------------

    def add_request_chunk(self, chunk: bytes, counted: int) -> None:
        """Tee a request body chunk; ``counted`` is the running total read so far."""
        room = self.limit - len(self.request_body)
        if room > 0 and chunk:
            self.request_body += chunk[:room]
        if len(chunk) > room:
            self.request_truncated = self.bodies
        self.request_size = max(self.request_size, counted)

    def add_response_chunk(self, chunk: bytes) -> None:
        if self.method == "HEAD":  # servers send no body for HEAD, whatever the app yields
            return
        self.response_size += len(chunk)
        room = self.limit - len(self.response_body)
        if room > 0:
            self.response_body += chunk[:room]
        if len(chunk) > room and chunk:
            self.response_truncated = self.bodies

    def header(self, name: str) -> str | None:
        return first_header(self.request_headers, name)

    # -- read in the background ------------------------------------------------------------

    def snapshot(self) -> CapturedRequest:
        """The frozen value the later stages read: built once, after the capture was taken.

        Decodes the headers (on first read) and copies the bodies once, so a response that
        is still streaming (a parked span whose wait expired) cannot change it afterwards.
        """
        bodies = self.bodies
        # The tuple itself, in field order: the named tuple's own __new__ is a Python
        # function taking its fields as arguments, several times slower.
        return _new_tuple(
            CapturedRequest,
            (
                self.method,
                self.path,
                self.query,
                self.scheme,
                self.request_headers,
                self.response_headers,
                self.status,
                self.route,
                self.client_ip,
                self.http_version,
                bodies,
                bytes(self.request_body) if bodies else b"",
                bytes(self.response_body) if bodies else b"",
                self.request_size,
                self.response_size,
                self.request_truncated,
                self.response_truncated,
                self.end_time_ns,
                self.explicit_consumer,
                self.callback_consumer,
                self.state_consumer,
                self.baggage_consumer,
            ),
        )


class CaptureStore:
    """Bounded map from server span id to its :class:`Capture`.

    Entries are added when a server span starts and removed when the exporter takes them.
    Bounded twice: by entries (``max_entries``) and by captured body bytes (``max_bytes``,
    counted when a response finishes). Beyond either, the oldest captures are evicted and
    counted in :attr:`evicted`; their requests are still recorded, from the span alone.
    This also covers spans that never reach the exporter (no spanlytics exporter, a sampler
    that recorded but did not sample, a worker that fell behind).
    """

    def __init__(self, max_entries: int = 4096, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max = max_entries
        self._max_bytes = max_bytes
        # Re-entrant: a signal handler that flushes may interrupt a holder on the main thread.
        self._lock = threading.RLock()
        self._entries: OrderedDict[int, Capture] = OrderedDict()
        self._bytes = 0
        self.evicted = 0

    def reset_after_fork(self) -> None:
        """A forked worker starts with no captures and a fresh lock."""
        self._lock = threading.RLock()
        self._entries = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _evict(self) -> None:
        while self._entries and (len(self._entries) > self._max or self._bytes > self._max_bytes):
            _, capture = self._entries.popitem(last=False)
            self._bytes -= capture.accounted
            capture.accounted = 0
            self.evicted += 1

    def register(self, span_id: int, capture: Capture) -> None:
        with self._lock:
            self._entries[span_id] = capture
            self._evict()

    def take(self, span_id: int) -> Capture | None:
        with self._lock:
            capture = self._entries.pop(span_id, None)
            if capture is not None:
                self._bytes -= capture.accounted
                capture.accounted = 0
            return capture

    def park(self, capture: Capture, resume: Callable[[], None]) -> bool:
        """Ask for ``resume`` to run once ``capture`` is finished.

        Returns False (and does not park) when it is already finished, so the caller can
        use it at once. ``resume`` runs on the request path: it must only enqueue.
        """
        with self._lock:
            if capture.done:
                return False
            capture.on_done = resume
            return True

    def finish(self, capture: Capture) -> None:
        """Mark ``capture`` complete (request path) and resume a span parked on it."""
        capture.end_time_ns = time.time_ns()
        with self._lock:
            capture.done = True
            resume, capture.on_done = capture.on_done, None
            if capture.span_id is not None and self._entries.get(capture.span_id) is capture:
                capture.accounted = len(capture.request_body) + len(capture.response_body)
                self._bytes += capture.accounted
                self._evict()
        if resume is not None:
            resume()


STORE = CaptureStore()
"""The process-wide side channel; shared by every middleware, processor and pipeline.
Emptied in a forked child and by :func:`spanlytics._process.reset_process`."""
on_reset(STORE.reset_after_fork, in_child=True)
