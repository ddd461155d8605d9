"""The items API in Flask, instrumented with spanlytics.

Blueprints group the routes; the ``api`` blueprint authenticates every request in a
``before_request`` hook that also identifies the consumer for spanlytics. Request bodies and
query strings are validated with Pydantic and rejected with FastAPI-shaped 422 errors.

Run from the repository root (spanlytics reads its settings from SPANLYTICS_* variables)::

    flask --app examples.flask_app run --port 5000
    gunicorn examples.flask_app:app --bind 127.0.0.1:5000 --workers 2 --threads 4
    python -m examples.flask_app                 # honours $HOST and $PORT
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, g, jsonify, request
from pydantic import BaseModel, Field, SecretStr, ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

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

#: In-memory items; one store per worker process.
store = ItemStore()

ModelT = TypeVar("ModelT", bound=BaseModel)


# --- validation ----------------------------------------------------------------------------


class ItemIn(BaseModel):
    """Body of ``POST /items`` and ``PUT /items/<item_id>``."""

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


def parse_body(model: type[ModelT]) -> ModelT:
    """Validate the JSON request body against ``model``."""
    raw = request.get_data(cache=True)
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


def parse_query(model: type[ModelT]) -> ModelT:
    """Validate the query string against ``model``."""
    return _validate(model, request.args.to_dict(), "query")


def error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON error response shaped like FastAPI's ``{"detail": ...}``."""
    response = jsonify(detail=detail)
    response.status_code = status
    response.headers.update(headers or {})
    return response


# --- public routes -------------------------------------------------------------------------

public = Blueprint("public", __name__)


@public.get("/healthz")
def healthz() -> Response:
    """Liveness/readiness probe; no authentication."""
    return jsonify(status="ok", items=len(store))


@public.post("/auth/login")
def login() -> Response:
    """Exchange a demo username and password (``alice`` / ``wonderland-42``) for a token."""
    credentials = parse_body(LoginIn)
    consumer = authenticate_user(credentials.username, credentials.password.get_secret_value())
    if consumer is None:
        return error(401, "Incorrect username or password", {"WWW-Authenticate": "Bearer"})
    return jsonify(
        access_token=issue_token(consumer["id"]), token_type="bearer", expires_in=TOKEN_TTL_SECONDS
    )


# --- authenticated routes ------------------------------------------------------------------

api = Blueprint("api", __name__)


@api.before_request
def authenticate() -> Response | None:
    """Authenticate every ``api`` request by ``X-API-Key`` or ``Authorization: Bearer``.

    Blueprint hooks run after the app-level hook of the OpenTelemetry Flask instrumentation,
    so the request's server span is already current here and ``spanlytics.set_consumer``
    attributes the request to the consumer. (An ``app.before_request`` hook registered
    before ``spanlytics.instrument_app(app)`` would run too early.)
    """
    credential = credential_from_headers(
        request.headers.get("Authorization"), request.headers.get("X-API-Key")
    )
    if credential is None:
        return error(401, "Not authenticated", {"WWW-Authenticate": "Bearer"})
    consumer = lookup_credential(credential)
    if consumer is None:
        return error(401, "Invalid API key or token", {"WWW-Authenticate": "Bearer"})
    spanlytics.set_consumer(
        consumer["id"], name=consumer["name"], group=consumer["group"], email=consumer["email"]
    )
    g.consumer = consumer
    return None


def current_consumer() -> ConsumerInfo:
    """The consumer that :func:`authenticate` identified for this request."""
    consumer: ConsumerInfo = g.consumer
    return consumer


account = Blueprint("account", __name__, url_prefix="/auth")


@account.get("/me")
def read_me() -> Response:
    """The consumer this request was identified as."""
    return jsonify(current_consumer())


items = Blueprint("items", __name__, url_prefix="/items")


@items.get("")
def list_items() -> Response:
    """List items, oldest first (``?skip=0&limit=20``)."""
    page = parse_query(Pagination)
    return jsonify(store.list_items(skip=page.skip, limit=page.limit))


@items.get("/export")
def export_items() -> Response:
    """Stream all items as NDJSON, one item per line and per chunk."""
    snapshot = store.list_items(limit=len(store))

    def ndjson() -> Iterator[str]:
        for item in snapshot:
            yield json.dumps(item) + "\n"

    return Response(ndjson(), mimetype="application/x-ndjson")


@items.get("/<int:item_id>")
def read_item(item_id: int) -> Response:
    """Get one item; 404 when it does not exist."""
    item = store.get(item_id)
    return error(404, "Item not found") if item is None else jsonify(item)


@items.post("")
def create_item() -> tuple[Response, int]:
    """Create an item; 422 for an invalid body."""
    data = parse_body(ItemIn)
    return jsonify(store.create(data.model_dump(), created_by=current_consumer()["id"])), 201


@items.put("/<int:item_id>")
def replace_item(item_id: int) -> Response:
    """Replace an item's fields; 404 when it does not exist, 422 for an invalid body."""
    data = parse_body(ItemIn)
    item = store.replace(item_id, data.model_dump())
    return error(404, "Item not found") if item is None else jsonify(item)


@items.delete("/<int:item_id>")
def delete_item(item_id: int) -> Response:
    """Delete an item; 404 when it does not exist."""
    if not store.delete(item_id):
        return error(404, "Item not found")
    return Response(status=204)


reports = Blueprint("reports", __name__, url_prefix="/reports")


@reports.get("/slow")
def slow_report() -> Response:
    """Wait ``delay_ms`` milliseconds (at most 2000); blocks this worker thread meanwhile."""
    query = parse_query(SlowQuery)
    applied = min(query.delay_ms, MAX_DELAY_MS)
    time.sleep(applied / 1000)
    return jsonify(requested_ms=query.delay_ms, delay_ms=applied)


debug = Blueprint("debug", __name__, url_prefix="/debug")


class DemoError(RuntimeError):
    """Raised on purpose by ``GET /debug/boom``."""


@debug.get("/boom")
def boom() -> Response:
    """Raise an unhandled exception: the client gets a 500, the span records the exception."""
    raise DemoError("boom: an intentional unhandled exception")


# Nested blueprints inherit the parent's before_request hook: everything below is authenticated.
for child in (account, items, reports, debug):
    api.register_blueprint(child)


# --- application ---------------------------------------------------------------------------


def handle_validation_error(exc: RequestValidationFailed) -> tuple[Response, int]:
    """Render invalid input as FastAPI does: ``422 {"detail": [{type, loc, msg, input}, ...]}``."""
    return jsonify(detail=exc.errors), 422


def handle_http_error(exc: HTTPException) -> Response:
    """Render 404, 405, 500, ... as JSON ``{"detail": "Not Found"}`` instead of HTML."""
    response = error(exc.code or 500, exc.name)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


app = Flask(__name__)
app.json.sort_keys = False  # type: ignore[attr-defined]  # keep fields in model order
app.register_blueprint(public)
app.register_blueprint(api)
app.register_error_handler(RequestValidationFailed, handle_validation_error)
app.register_error_handler(HTTPException, handle_http_error)

# Attach spanlytics to the TracerProvider (creating one if the app has none), then install
# body/header capture and the standard OpenTelemetry Flask instrumentation. Both calls read
# their settings from SPANLYTICS_* environment variables and are idempotent.
spanlytics.configure()
spanlytics.instrument_app(app)


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "5000")))
