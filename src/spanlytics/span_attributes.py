"""Reading an HTTP server span's attributes in any HTTP semantic conventions version.

The old conventions, the stable ones (``OTEL_SEMCONV_STABILITY_OPT_IN=http``) or both
(``http/dup``): each tuple below names one value, stable name first. :func:`request_fields`
reads them into the :class:`~spanlytics.record.RequestRecord` fields they give.

This module does no I/O and imports nothing of spanlytics above the ground.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from spanlytics.app_routes import normalize_route

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.util.types import AttributeValue

METHOD = ("http.request.method", "http.method")
SCHEME = ("url.scheme", "http.scheme")
STATUS = ("http.response.status_code", "http.status_code")
CLIENT = ("client.address", "http.client_ip", "net.peer.ip")
USER_AGENT = ("user_agent.original", "http.user_agent")
FLAVOR = ("network.protocol.version", "http.flavor")
HOST = ("server.address", "http.host", "net.host.name", "http.server_name")
PORT = ("server.port", "net.host.port")
REQUEST_SIZE = ("http.request.body.size", "http.request_content_length")
RESPONSE_SIZE = ("http.response.body.size", "http.response_content_length")

_DEFAULT_PORTS = {"http": 80, "https": 443}


def read_attributes(span: ReadableSpan) -> dict[str, AttributeValue]:
    """One plain copy of the span's attributes: the SDK's ``BoundedAttributes`` answers each
    lookup and iteration step in Python, under a lock. A finished span's attributes no longer
    change, so its inner dict is copied directly when it has one."""
    bounded = getattr(span, "_attributes", None)
    inner = getattr(bounded, "_dict", None)
    if isinstance(inner, dict):
        return dict(inner)
    return dict(span.attributes or {})


def first(attrs: Mapping[str, AttributeValue], names: Sequence[str]) -> AttributeValue | None:
    """The value of the first of ``names`` that the span has."""
    for name in names:
        value = attrs.get(name)
        if value is not None:
            return value
    return None


def as_str(value: AttributeValue | None) -> str | None:
    return None if value is None else str(value)


def as_int(value: AttributeValue | None) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def split_target(attrs: Mapping[str, AttributeValue]) -> tuple[str, str]:
    """The request's path and query string."""
    path = as_str(attrs.get("url.path"))
    if path is not None:
        return path, as_str(attrs.get("url.query")) or ""
    target = as_str(attrs.get("http.target")) or "/"
    url = as_str(attrs.get("http.url"))
    if url and "?" in url and "?" not in target:
        target = f"{target}?{url.split('?', 1)[1]}"
    path, _, query = target.partition("?")
    return path or "/", query


def authority(scheme: str, host: str | None, port: int | None) -> str:
    """``host[:port]`` as a URL has it: the port only when it is not the scheme's default."""
    if not host:
        return "localhost"
    if ":" in host and not host.startswith("["):
        bare, _, maybe_port = host.rpartition(":")
        if maybe_port.isdigit():
            host, port = bare, int(maybe_port)
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return host
    return f"{host}:{port}"


def span_authority(attrs: Mapping[str, AttributeValue], scheme: str) -> str:
    """The authority the span's server address and port give for ``scheme``."""
    return authority(scheme, as_str(first(attrs, HOST)), as_int(first(attrs, PORT)))


def request_fields(attrs: Mapping[str, AttributeValue]) -> dict[str, Any]:
    """The record fields the span's attributes give (``method`` is None for a non-HTTP span).

    ``host`` is left out: it depends on the scheme, which a capture may correct (see
    :func:`span_authority`)."""
    path, query = split_target(attrs)
    return {
        "method": as_str(first(attrs, METHOD)),
        "route": normalize_route(as_str(attrs.get("http.route"))),
        "path": path,
        "query": query,
        "status": as_int(first(attrs, STATUS)),
        "scheme": as_str(first(attrs, SCHEME)) or "http",
        "http_version": as_str(first(attrs, FLAVOR)),
        "client_ip": as_str(first(attrs, CLIENT)),
        "user_agent": as_str(first(attrs, USER_AGENT)),
        "request_size": as_int(first(attrs, REQUEST_SIZE)),
        "response_size": as_int(first(attrs, RESPONSE_SIZE)),
    }
