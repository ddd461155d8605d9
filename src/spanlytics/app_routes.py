"""The routes of the apps capture was installed on, for destinations that announce them, and
the one route template syntax every stage uses (:func:`normalize_route`).

Apitally's ``startup`` message lists the app's endpoints (method + path template) so its
dashboard shows endpoints that got no traffic yet. ``instrument_app`` and the zero-code hook
register each app here (a weak reference: registering never keeps an app alive); the
destination reads the routes later, on its background thread, once the app has them all.
:func:`spanlytics._process.reset_process` forgets the registered apps.

>>> from flask import Flask
>>> app = Flask("demo")
>>> _ = app.get("/items/<int:item_id>")(lambda item_id: "")
>>> app_routes(app)
[('GET', '/items/{item_id}')]
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from spanlytics._process import on_reset
from spanlytics._throttle import ThrottledLogger

_log = ThrottledLogger(logging.getLogger("spanlytics.capture"))

_SKIPPED_METHODS = frozenset({"HEAD", "OPTIONS"})
_FLASK_PARAM = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
_STARLETTE_CONVERTOR = re.compile(r"\{([^{}:]+):[^{}]*\}")


def normalize_route(route: str | None) -> str | None:
    """One template syntax for every framework: ``/items/{item_id}``.

    Flask/werkzeug ``/items/<int:item_id>`` and Starlette ``/items/{item_id:int}`` are
    rewritten; FastAPI templates are already in that form.
    """
    if not route:
        return None
    if "<" in route:
        route = _FLASK_PARAM.sub(r"{\1}", route)
    if ":" in route:
        route = _STARLETTE_CONVERTOR.sub(r"{\1}", route)
    return route


class _Registry:
    """The registered apps (weakly) and a version that grows with every change."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.apps: list[weakref.ref[Any]] = []
        self.version = 0

    def reset(self) -> None:
        with self.lock:
            self.apps = []
            self.version += 1  # a destination that announced the old apps announces again


_REGISTRY = _Registry()
on_reset(_REGISTRY.reset)


def register_app(app: object) -> None:
    """Remember ``app`` (weakly) as one whose routes destinations may announce."""
    registry = _REGISTRY
    with registry.lock:
        if any(ref() is app for ref in registry.apps):
            return
        try:
            registry.apps.append(weakref.ref(app))
        except TypeError:  # an object without weak reference support: nothing to announce
            return
        registry.version += 1


def version() -> int:
    """Grows whenever an app is registered: a destination re-announces when it changes."""
    return _REGISTRY.version


@dataclass(frozen=True)
class AppInfo:
    """What the registered apps tell about themselves."""

    framework: str | None  # "starlette" (FastAPI too) or "flask"
    routes: tuple[tuple[str, str], ...]  # (METHOD, normalised path template), sorted
    openapi: str | None  # FastAPI's OpenAPI document as JSON text

    def framework_or_guess(self) -> str:
        """The registered apps' framework; with none registered, the one this process
        imported ("flask" only when Starlette is not imported too)."""
        if self.framework is not None:
            return self.framework
        return "flask" if "flask" in sys.modules and "starlette" not in sys.modules else "starlette"


def apps_info() -> AppInfo:
    """The routes, framework and OpenAPI document of every registered app still alive."""
    with _REGISTRY.lock:
        apps = [app for app in (ref() for ref in _REGISTRY.apps) if app is not None]
    routes: set[tuple[str, str]] = set()
    framework = openapi = None
    for app in apps:
        try:
            routes.update(app_routes(app))
            framework = framework or ("flask" if hasattr(app, "url_map") else "starlette")
            openapi = openapi or _openapi(app)
        except Exception as exc:  # an exotic app: announce what we can, never fail
            _log.failure("routes.read", "spanlytics: could not list an app's routes", exc)
    return AppInfo(framework, tuple(sorted(routes, key=lambda r: (r[1], r[0]))), openapi)


def app_routes(app: Any) -> list[tuple[str, str]]:
    """``(METHOD, /path/{param})`` for each endpoint of a FastAPI, Starlette or Flask app.

    HEAD and OPTIONS are left out, as are routes hidden from the schema (FastAPI's docs
    pages) and Flask's static route, as Apitally's own middleware does.
    """
    if hasattr(app, "url_map"):  # Flask
        return [
            (method, normalize_route(rule.rule) or rule.rule)
            for rule in app.url_map.iter_rules()
            if rule.endpoint != "static"
            for method in sorted(rule.methods or ())
            if method not in _SKIPPED_METHODS
        ]
    return list(_starlette_routes(getattr(app, "routes", ()), ""))


def _starlette_routes(routes: Iterable[Any], prefix: str) -> Iterable[tuple[str, str]]:
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):  # FastAPI >= 0.138 keeps included routers unflattened
            for context in contexts():
                if context.include_in_schema and context.path:
                    yield from _endpoint(context.methods, prefix + context.path)
            continue
        children = getattr(route, "routes", None)
        if children is not None and not hasattr(route, "endpoint"):  # a Mount
            yield from _starlette_routes(children, prefix + getattr(route, "path", ""))
            continue
        if getattr(route, "include_in_schema", True) and getattr(route, "path", None):
            yield from _endpoint(getattr(route, "methods", None), prefix + route.path)


def _endpoint(methods: Iterable[str] | None, path: str) -> Iterable[tuple[str, str]]:
    template = normalize_route(path) or path
    for method in sorted(methods or ()):
        if method.upper() not in _SKIPPED_METHODS:
            yield method.upper(), template


def _openapi(app: Any) -> str | None:
    """FastAPI's own OpenAPI document (built in process; no request is made)."""
    build = getattr(app, "openapi", None)
    if not callable(build) or not getattr(app, "openapi_url", None):
        return None
    return json.dumps(build(), separators=(",", ":"))
