"""The dashboard as a Starlette app over one store, read-only::

    app = create_app("./spanlytics.db")                 # or a postgresql:// URL
    uvicorn.run(app, host="127.0.0.1", port=8050)

Views: ``/`` (overview), ``/endpoint?method=GET&route=/items/{id}``, ``/consumer?id=acme``,
``/requests`` (the log, filtered and paged by its query string) and ``/requests/<id>`` (one
record). Every view takes the window of :mod:`spanlytics.dashboard.params`.

Deliberate choices (the store holds what clients sent: paths, headers, bodies and consumer
names are attacker input):

* Everything from the store reaches the page through Jinja's autoescape; the charts are SVG
  built with every text escaped; the one script file never inserts store data as HTML.
* Every response carries a strict Content-Security-Policy (``default-src 'self'``, no inline
  script or style), ``nosniff``, no framing and no referrer.
* With a ``token``, every request must carry it: ``Authorization: Bearer <token>``, or the
  cookie set when a browser opens a link with ``?token=<token>`` (then redirected to the
  same URL without it). Compared in constant time. Without a token (a loopback bind), only
  loopback host names are accepted, so that a web page cannot reach the dashboard through
  DNS rebinding.
* Each request reads one snapshot through :func:`~spanlytics.destinations.any_store.open_reader`
  (SQLite opened ``mode=ro``, PostgreSQL in a ``READ ONLY`` transaction), in Starlette's
  thread pool.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from spanlytics.dashboard import views
from spanlytics.dashboard.params import PRESETS, Window, log_filter, parse_cursor, parse_window, url
from spanlytics.dashboard.render import STATIC, render
from spanlytics.destinations.any_store import open_reader
from spanlytics.destinations.stores import StoreError, StoreReader

__all__ = ["CSP", "LOOPBACK_NAMES", "create_app"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1"]
COOKIE = "spanlytics_dashboard"
_WINDOW_KEYS = ("range", "from", "to", "before")


def _session(token: str) -> str:
    """The cookie's value: derived from the token, so the token itself is not stored."""
    return hmac.new(token.encode(), b"spanlytics dashboard session", hashlib.sha256).hexdigest()


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def host_name(header: str) -> str:
    """The name in a Host header: ``[::1]:8050`` is ``::1``, ``localhost:8050`` is ``localhost``."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.partition(":")[0].lower()


class _Guard(BaseHTTPMiddleware):
    """The host check, the token check (when there is a token) and the security headers of
    every response."""

    def __init__(self, app: ASGIApp, token: str | None, hosts: list[str] | None) -> None:
        super().__init__(app)
        self.token = token
        self.session = None if token is None else _session(token)
        self.hosts = hosts

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = self.refuse(request) or await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def refuse(self, request: Request) -> Response | None:
        if self.hosts is not None and host_name(request.headers.get("host", "")) not in self.hosts:
            return PlainTextResponse("this dashboard answers only to its own host names", status_code=400)
        if self.token is None or self.session is None:
            return None
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _same(bearer.strip(), self.token):
            return None
        if _same(request.cookies.get(COOKIE), self.session):
            return None
        if "token" in request.query_params and _same(request.query_params["token"], self.token):
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            path = "/" + request.url.path.lstrip("/")  # never //host: a redirect off the dashboard
            target = path + (f"?{urlencode(rest)}" if rest else "")
            redirect = RedirectResponse(target, status_code=303)
            redirect.set_cookie(COOKIE, self.session, httponly=True, samesite="strict", path="/")
            return redirect
        return PlainTextResponse("a token is required: open the URL the dashboard printed", status_code=401)


class Dashboard:
    """The views over one store."""

    def __init__(self, db: str, trace_url: str | None) -> None:
        self.db = db
        self.trace_url = trace_url

    def _page(
        self, request: Request, template: str, view: str, window: Window, **context: Any
    ) -> HTMLResponse:
        params = dict(request.query_params)
        path = request.url.path

        def here(**changes: str) -> str:
            return url(path, {**params, **changes})

        def link(target: str, **extra: str) -> str:
            return url(target, {**window.query(), **extra})

        keep = {k: v for k, v in params.items() if k not in _WINDOW_KEYS}
        html = render(
            template,
            view=view,
            window=window,
            presets=list(PRESETS),
            here=here,
            link=link,
            keep=keep,
            params=params,
            now=time.time_ns(),
            **context,
        )
        return HTMLResponse(html)

    def _read(
        self,
        request: Request,
        build: Callable[[StoreReader, Window, Mapping[str, str]], tuple[str, str, dict[str, Any]]],
    ) -> Response:
        params = dict(request.query_params)
        try:
            window = parse_window(params, time.time_ns())
            with open_reader(self.db) as reader:
                template, view, context = build(reader, window, params)
        except ValueError as exc:
            return _problem("Not a view the dashboard can show", str(exc), 400)
        except LookupError as exc:
            return _problem("Not found", str(exc.args[0]), 404)
        except (FileNotFoundError, StoreError) as exc:
            return _problem("The store cannot be read", str(exc), 503)
        return self._page(request, template, view, window, **context)

    def overview(self, request: Request) -> Response:
        def build(reader: StoreReader, window: Window, params: Mapping[str, str]) -> tuple[str, str, Any]:
            return "overview.html", "overview", {"data": views.overview(reader, window), "top": views.TOP}

        return self._read(request, build)

    def endpoint(self, request: Request) -> Response:
        def build(reader: StoreReader, window: Window, params: Mapping[str, str]) -> tuple[str, str, Any]:
            method = params.get("method", "")
            route = None if params.get("unmatched") == "1" else params.get("route", "")
            if not method or route == "":
                raise ValueError("an endpoint is a method and a route (or unmatched=1)")
            return "endpoint.html", "endpoint", {"data": views.endpoint_view(reader, window, method, route)}

        return self._read(request, build)

    def consumer(self, request: Request) -> Response:
        def build(reader: StoreReader, window: Window, params: Mapping[str, str]) -> tuple[str, str, Any]:
            consumer_id = None if params.get("anonymous") == "1" else params.get("id", "")
            if consumer_id == "":
                raise ValueError("a consumer is an id (or anonymous=1)")
            return "consumer.html", "consumer", {"data": views.consumer_view(reader, window, consumer_id)}

        return self._read(request, build)

    def requests(self, request: Request) -> Response:
        def build(reader: StoreReader, window: Window, params: Mapping[str, str]) -> tuple[str, str, Any]:
            where = log_filter(params, window)
            before = parse_cursor(params.get("before"))
            data = views.request_log(reader, where, before)
            return "requests.html", "requests", {"data": data, "f": where, "before": before}

        return self._read(request, build)

    def record(self, request: Request) -> Response:
        record_id = request.path_params["record_id"]

        def build(reader: StoreReader, window: Window, params: Mapping[str, str]) -> tuple[str, str, Any]:
            record = reader.record(record_id)
            if record is None:
                raise LookupError("no request with this id in the store (pruned by retention?)")
            return "request.html", "requests", {"data": views.record_view(record, self.trace_url)}

        return self._read(request, build)


def _problem(title: str, message: str, status: int) -> HTMLResponse:
    return HTMLResponse(render("problem.html", title=title, message=message), status_code=status)


def create_app(
    db: str,
    *,
    token: str | None = None,
    trace_url: str | None = None,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The dashboard over the store ``db`` (a SQLite path or a ``postgresql://`` URL).

    ``token``: required on every request when given (see the module docstring).
    ``trace_url``: a template like ``https://jaeger.example/trace/{trace_id}`` that links
    trace ids. ``allowed_hosts``: the Host names accepted (default: the loopback names
    without a token, any with one).
    """
    if token is not None and not token:
        raise ValueError("an empty token protects nothing")
    dashboard = Dashboard(db, trace_url)
    hosts = allowed_hosts or (LOOPBACK_NAMES if token is None else None)
    return Starlette(
        routes=[
            Route("/", dashboard.overview),
            Route("/endpoint", dashboard.endpoint),
            Route("/consumer", dashboard.consumer),
            Route("/requests", dashboard.requests),
            Route("/requests/{record_id:path}", dashboard.record),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(_Guard, token=token, hosts=hosts)],
    )
