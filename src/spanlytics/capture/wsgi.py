"""WSGI capture middleware: tees ``wsgi.input``, ``start_response``/``write`` and the body.

Wrap the app's WSGI callable *outside* the OpenTelemetry instrumentation
(``spanlytics.instrument_app`` does ``app.wsgi_app = WSGICaptureMiddleware(app.wsgi_app)``)::

    application = WSGICaptureMiddleware(OpenTelemetryMiddleware(application))

Guarantees: ``wsgi.input`` stays fully readable (we only copy what the app reads, up to the
cap); the response iterable is passed through chunk by chunk, so streaming still streams;
``close()`` is always propagated; a list/tuple response is returned as the very same object
(servers may special-case it); exceptions propagate unchanged. Only lists and tuples are read
beside the server (response headers, the response): an iterator can be read once, by the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from functools import partial
from typing import Any
from urllib.parse import quote

from spanlytics._throttle import ThrottledLogger
from spanlytics.capture.lifecycle import begin_request, link_current_server_span, note_consumer_hints
from spanlytics.capture.options import PROCESS_CAPTURE, CaptureOptions
from spanlytics.capture.store import STORE, Capture, enter_capture, exit_capture

Environ = MutableMapping[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_log = ThrottledLogger(logging.getLogger("spanlytics.capture.wsgi"))


def _request_headers(items: Iterable[tuple[str, Any]]) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for key, value in items:
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").lower(), str(value)))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((key.replace("_", "-").lower(), str(value)))
    return tuple(headers)


def _lower_names(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((k.lower(), v) for k, v in headers)


def _raw_path(environ: Environ) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return str(raw).split("?", 1)[0]
    path = f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}" or "/"
    # PEP 3333 strings are bytes decoded as latin-1; re-encode to percent-quote the real bytes.
    return quote(path.encode("latin-1", errors="replace"), safe="/:@!$&'()*+,;=-._~%")


def new_capture(environ: Environ, options: CaptureOptions) -> Capture:
    length = str(environ.get("CONTENT_LENGTH") or "")
    return Capture(
        method=str(environ.get("REQUEST_METHOD", "GET")),
        path=_raw_path(environ),
        query=str(environ.get("QUERY_STRING", "")),
        scheme=str(environ.get("wsgi.url_scheme", "http")),
        # a copy of the environ's items now (the app may change it), decoded by the exporter
        request_headers=partial(_request_headers, list(environ.items())),
        bodies=options.capture_bodies,
        limit=options.max_body_bytes,
        declared_request_size=int(length) if length.isdigit() else None,
        client_ip=environ.get("REMOTE_ADDR"),
        http_version=str(environ.get("SERVER_PROTOCOL", "HTTP/1.1")).rpartition("/")[2] or "1.1",
        admitted_by=options.exclusions,
    )


class _InputTee:
    """``wsgi.input`` proxy that copies what the app reads into the capture."""

    def __init__(self, stream: Any, capture: Capture) -> None:
        self._stream = stream
        self._capture = capture
        self._read = 0

    def _tee(self, data: bytes) -> bytes:
        if data:
            self._read += len(data)
            self._capture.add_request_chunk(data, self._read)
        return data

    def read(self, *args: Any) -> bytes:
        return self._tee(self._stream.read(*args))

    def readline(self, *args: Any) -> bytes:
        return self._tee(self._stream.readline(*args))

    def read1(self, *args: Any) -> bytes:
        read1 = getattr(self._stream, "read1", None)
        return self._tee(read1(*args) if read1 is not None else self._stream.read(*args))

    def readinto(self, buffer: Any) -> int | None:
        """werkzeug's LimitedStream reads this way whenever the stream offers it."""
        readinto = getattr(self._stream, "readinto", None)
        if readinto is None:
            data = self._stream.read(len(buffer))
            buffer[: len(data)] = data
            self._tee(data)
            return len(data)
        count: int | None = readinto(buffer)
        if count:
            self._tee(bytes(memoryview(buffer)[:count]))
        return count

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        for line in lines:
            self._tee(line)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            yield self._tee(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _ResponseTee:
    """The response iterable, passed through chunk by chunk; finishing the capture on close."""

    def __init__(self, result: Iterable[bytes], finish: Callable[[], None], capture: Capture) -> None:
        self._result = result
        self._finish = finish
        self._capture = capture

    def __iter__(self) -> Iterator[bytes]:
        add = self._capture.add_response_chunk
        for chunk in self._result:
            add(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()


class WSGICaptureMiddleware:
    """Records request/response headers and bodies (up to a cap) for spanlytics.

    >>> app.wsgi_app = WSGICaptureMiddleware(app.wsgi_app)  # doctest: +SKIP
    """

    def __init__(self, app: WSGIApp, options: CaptureOptions | None = None) -> None:
        self.app = app
        self._options = options

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        return capture_wsgi(self.app, environ, start_response, self._options)


def capture_wsgi(
    app: WSGIApp, environ: Environ, start_response: StartResponse, options: CaptureOptions | None = None
) -> Iterable[bytes]:
    """Run ``app`` for one WSGI request, capturing it."""
    options = options or PROCESS_CAPTURE.options()
    capture: Capture | None = None
    try:
        if begin_request(options, str(environ.get("PATH_INFO", "/")), environ.get("HTTP_USER_AGENT")):
            capture = new_capture(environ, options)
            stream = environ.get("wsgi.input")
            token = enter_capture(capture)
            environ["wsgi.input"] = _InputTee(stream, capture)
            link_current_server_span(capture)
    except Exception as exc:
        _log.failure("wsgi.start", "request capture could not start; request not captured", exc)
        if capture is not None:
            environ["wsgi.input"] = stream
            exit_capture(token)
        capture = None
    if capture is None:  # the app runs exactly once, outside anything that could catch its errors
        return app(environ, start_response)

    finished = False

    def finish() -> None:
        nonlocal finished
        if finished:
            return
        finished = True
        note_consumer_hints(capture, options, environ)
        STORE.finish(capture)

    def start_response_tee(status: str, headers: Iterable[tuple[str, str]], *exc_info: Any) -> Any:
        code = status[:3]
        capture.status = int(code) if code.isdigit() else None
        # PEP 3333 asks for a list, but gunicorn and werkzeug iterate whatever they get:
        # reading a generator here would leave the server none to send.
        if type(headers) is list or type(headers) is tuple:
            capture.response_headers = partial(_lower_names, list(headers))
        write = start_response(status, headers, *exc_info)

        def write_tee(data: bytes) -> object:
            capture.add_response_chunk(data)
            return write(data)

        return write_tee

    try:
        result = app(environ, start_response_tee)
    except BaseException:
        finish()
        raise
    finally:
        exit_capture(token)
    if isinstance(result, (list, tuple)):
        for chunk in result:
            capture.add_response_chunk(chunk)
        finish()
        return result
    return _ResponseTee(result, finish, capture)
