"""The items API in plain Starlette, instrumented with spanlytics.

``AuthenticationMiddleware`` with an API-key backend authenticates requests and identifies the
consumer for spanlytics; endpoints that need a consumer call :func:`current_consumer`. Bodies
and query strings are validated with Pydantic and rejected with FastAPI-shaped 422 errors.

Run from the repository root (spanlytics reads its settings from SPANLYTICS_* variables)::

    uvicorn examples.starlette_app:app --port 8000
    python -m examples.starlette_app             # honours $HOST and $PORT
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import uvicorn
from pydantic import BaseModel, Field, SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import spanlytics
from examples.demo_data import (
    TOKEN_TTL_SECONDS,
    ConsumerInfo,
    ItemStore,
    authenticate_user,
    credential_from_headers,
    issue_token,
    lookup_credential,
)

MAX_DELAY_MS = 2000
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}

ModelT = TypeVar("ModelT", bound=BaseModel)

#: In-memory items; one store per worker process.
store = ItemStore()


# --- validation ----------------------------------------------------------------------------


class ItemIn(BaseModel):
    """Body of ``POST /items`` and ``PUT /items/{item_id}``."""

    name: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    price: float = Field(gt=0, le=1_000_000)
    tags: list[str] = Field(default_factory=list, max_length=10)


class LoginIn(BaseModel):
    """Body of ``POST /auth/login``."""

    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=128)


class Pagination(BaseModel):
    """Query string of ``GET /items``."""

    skip: int = Field(default=0, ge=0)
    limit: int = Field(default=20, ge=1, le=100)


class SlowQuery(BaseModel):
    """Query string of ``GET /reports/slow``."""

    delay_ms: int = Field(default=250, ge=0)


class RequestValidationFailed(Exception):
    """Invalid input; rendered as ``422 {"detail": [...]}`` exactly like FastAPI does."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("request validation failed")
        self.errors = errors


def _validate(model: type[ModelT], data: object, location: str) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # exc.json() makes every error JSON-safe (ctx values, inputs); prefix loc like FastAPI.
        errors: list[dict[str, Any]] = json.loads(exc.json(include_url=False))
        for error in errors:
            error["loc"] = [location, *error["loc"]]
        raise RequestValidationFailed(errors) from exc


async def parse_body(request: Request, model: type[ModelT]) -> ModelT:
    """Validate the JSON request body against ``model``."""
    raw = await request.body()
    if not raw:
        raise RequestValidationFailed(
            [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
        )
    try:
        data = json.loads(raw)
    except ValueError as exc:  # invalid JSON or invalid UTF-8
        raise RequestValidationFailed(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", getattr(exc, "pos", 0)],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": getattr(exc, "msg", str(exc))},
                }
            ]
        ) from exc
    return _validate(model, data, "body")


def parse_query(request: Request, model: type[ModelT]) -> ModelT:
    """Validate the query string against ``model``."""
    return _validate(model, dict(request.query_params), "query")


# --- authentication ------------------------------------------------------------------------


class ApiConsumer(BaseUser):
    """The authenticated API consumer, available as ``request.user``."""

    def __init__(self, consumer: ConsumerInfo) -> None:
        self.consumer = consumer

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.consumer["name"]

    @property
    def identity(self) -> str:
        return self.consumer["id"]


class ApiKeyBackend(AuthenticationBackend):
    """Authenticate by ``X-API-Key`` or ``Authorization: Bearer`` and identify the consumer.

    The OpenTelemetry Starlette middleware wraps all user middleware, so the request's server
    span is current here and ``spanlytics.set_consumer`` attributes the request to the consumer.
    """

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        credential = credential_from_headers(conn.headers.get("Authorization"), conn.headers.get("X-API-Key"))
        if credential is None:
            return None  # anonymous: public endpoints work, the others answer 401
        consumer = lookup_credential(credential)
        if consumer is None:
            raise AuthenticationError("Invalid API key or token")
        spanlytics.set_consumer(
            consumer["id"], name=consumer["name"], group=consumer["group"], email=consumer["email"]
        )
        return AuthCredentials(["authenticated"]), ApiConsumer(consumer)


def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """Answer a bad credential with 401 (Starlette's default would be a plain-text 400)."""
    return JSONResponse({"detail": str(exc)}, status_code=401, headers=UNAUTHORIZED_HEADERS)


def current_consumer(request: Request) -> ConsumerInfo:
    """The authenticated consumer; raises 401 when the request carried no credential."""
    user = request.user
    if not isinstance(user, ApiConsumer):
        raise HTTPException(401, "Not authenticated", headers=UNAUTHORIZED_HEADERS)
    return user.consumer


# --- endpoints -----------------------------------------------------------------------------


async def healthz(request: Request) -> JSONResponse:
    """Liveness/readiness probe; no authentication."""
    return JSONResponse({"status": "ok", "items": len(store)})


async def login(request: Request) -> JSONResponse:
    """Exchange a demo username and password (``alice`` / ``wonderland-42``) for a token."""
    credentials = await parse_body(request, LoginIn)
    consumer = authenticate_user(credentials.username, credentials.password.get_secret_value())
    if consumer is None:
        raise HTTPException(401, "Incorrect username or password", headers=UNAUTHORIZED_HEADERS)
    token = issue_token(consumer["id"])
    return JSONResponse({"access_token": token, "token_type": "bearer", "expires_in": TOKEN_TTL_SECONDS})


async def read_me(request: Request) -> JSONResponse:
    """The consumer this request was identified as."""
    return JSONResponse(current_consumer(request))


class ItemCollection(HTTPEndpoint):
    """``/items``: list and create."""

    async def get(self, request: Request) -> JSONResponse:
        """List items, oldest first (``?skip=0&limit=20``)."""
        current_consumer(request)
        page = parse_query(request, Pagination)
        return JSONResponse(store.list_items(skip=page.skip, limit=page.limit))

    async def post(self, request: Request) -> JSONResponse:
        """Create an item; 422 for an invalid body."""
        consumer = current_consumer(request)
        data = await parse_body(request, ItemIn)
        return JSONResponse(store.create(data.model_dump(), created_by=consumer["id"]), status_code=201)


class ItemDetail(HTTPEndpoint):
    """``/items/{item_id}``: read, replace and delete; 404 when the item does not exist."""

    async def get(self, request: Request) -> JSONResponse:
        current_consumer(request)
        item = store.get(request.path_params["item_id"])
        if item is None:
            raise HTTPException(404, "Item not found")
        return JSONResponse(item)

    async def put(self, request: Request) -> JSONResponse:
        current_consumer(request)
        data = await parse_body(request, ItemIn)
        item = store.replace(request.path_params["item_id"], data.model_dump())
        if item is None:
            raise HTTPException(404, "Item not found")
        return JSONResponse(item)

    async def delete(self, request: Request) -> Response:
        current_consumer(request)
        if not store.delete(request.path_params["item_id"]):
            raise HTTPException(404, "Item not found")
        return Response(status_code=204)


async def export_items(request: Request) -> StreamingResponse:
    """Stream all items as NDJSON, one item per line and per chunk."""
    current_consumer(request)
    snapshot = store.list_items(limit=len(store))

    async def ndjson() -> AsyncIterator[bytes]:
        for item in snapshot:
            yield (json.dumps(item) + "\n").encode()
            await asyncio.sleep(0)  # let other requests run between chunks

    return StreamingResponse(ndjson(), media_type="application/x-ndjson")


async def slow_report(request: Request) -> JSONResponse:
    """Wait ``delay_ms`` milliseconds (at most 2000) without blocking the event loop."""
    current_consumer(request)
    query = parse_query(request, SlowQuery)
    applied = min(query.delay_ms, MAX_DELAY_MS)
    await asyncio.sleep(applied / 1000)
    return JSONResponse({"requested_ms": query.delay_ms, "delay_ms": applied})


class DemoError(RuntimeError):
    """Raised on purpose by ``GET /debug/boom``."""


async def boom(request: Request) -> Response:
    """Raise an unhandled exception: the client gets a 500, the span records the exception."""
    current_consumer(request)
    raise DemoError("boom: an intentional unhandled exception")


# --- application ---------------------------------------------------------------------------


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    """Render 401, 404, 405, ... as JSON ``{"detail": ...}`` like FastAPI."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Render invalid input as FastAPI does: ``422 {"detail": [{type, loc, msg, input}, ...]}``."""
    assert isinstance(exc, RequestValidationFailed)
    return JSONResponse({"detail": exc.errors}, status_code=422)


async def handle_unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    """Answer an unhandled exception with a JSON 500; the exception still reaches the server log.

    Starlette re-raises the exception after this response, and uvicorn then closes the
    connection: ``Connection: close`` tells keep-alive clients not to reuse it.
    """
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500, headers={"Connection": "close"})


# Routes stay flat rather than grouped with Mount: the OpenTelemetry Starlette instrumentation
# reports a request under a Mount with the mount's path as http.route (e.g. "/auth", not
# "/auth/login"), which would merge endpoints in the analytics.
routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/auth/login", login, methods=["POST"]),
    Route("/auth/me", read_me, methods=["GET"]),
    Route("/items", ItemCollection),
    Route("/items/export", export_items, methods=["GET"]),
    Route("/items/{item_id:int}", ItemDetail),
    Route("/reports/slow", slow_report, methods=["GET"]),
    Route("/debug/boom", boom, methods=["GET"]),
]

app = Starlette(
    routes=routes,
    middleware=[Middleware(AuthenticationMiddleware, backend=ApiKeyBackend(), on_error=on_auth_error)],
    exception_handlers={
        HTTPException: handle_http_error,
        RequestValidationFailed: handle_validation_error,
        Exception: handle_unhandled_error,
    },
)

# Attach spanlytics to the TracerProvider (creating one if the app has none), then install
# body/header capture and the standard OpenTelemetry Starlette instrumentation. Both calls read
# their settings from SPANLYTICS_* environment variables and are idempotent.
spanlytics.configure()
spanlytics.instrument_app(app)


if __name__ == "__main__":
    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
