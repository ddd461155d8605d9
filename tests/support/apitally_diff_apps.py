"""One API as a FastAPI app and as a Flask app, under two Apitally set-ups, for the
differential test (tests/test_apitally_differential.py).

Each server process picks its set-up from the environment when it imports this module:
``DIFF_FRAMEWORK`` (``fastapi`` or ``flask``: the app that gets it; the official client is a
singleton per process) and ``DIFF_SIDE``:

* ``official``: the official ``apitally`` 0.x middleware for client id ``DIFF_CLIENT_ID``,
  sending to ``APITALLY_HUB_BASE_URL`` (read when ``apitally.client`` is imported);
* ``spanlytics``: ``spanlytics.configure()`` with the ``apitally`` destination, the same
  client id, options and hub (``DIFF_HUB_URL``), then ``instrument_app``.

Both identify the consumer from an ``X-API-Key`` header (``API_KEYS``), with a name and a
group, through their own ``set_consumer``. ``/healthz`` is the readiness probe; both keep it
out of the request log. Without ``DIFF_SIDE`` the apps are plain: the test imports the
constants from here.
"""

from __future__ import annotations

import os
import time
from typing import Any

import flask
import pydantic
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

SIDE = os.environ.get("DIFF_SIDE", "")
CLIENT_ID = os.environ.get("DIFF_CLIENT_ID", "")

API_KEYS = {  # X-API-Key -> (identifier, name, group)
    "key-ann-0001": ("consumer-ann", "Ann's Bakery", "free"),
    "key-bob-0002": ("consumer-bob", "Bob & Co", "pro"),
    "key-cy-00003": ("consumer-cy", "Cy Corp", "enterprise"),
    "key-dee-0004": ("consumer-dee", "Dee", "trial"),
}
ACCESS_TOKEN = "tok-access-5a1b2c3d"  # returned by /login
REFRESH_TOKEN = "tok-refresh-9e8f7a6b"
SLOW_S = 0.12
# HTML, a type neither client logs bodies of: the official Flask middleware empties the JSON
# and text bodies it logs (see the differential test), and the readiness probe needs whole ones.
HEALTHY = "<p>ok</p>"
CATALOGUE = [{"id": i, "name": f"item {i}", "tags": ["a", "b", "c"]} for i in range(1, 41)]


class BoomError(RuntimeError):
    """Raised by /boom, so both clients see a module-qualified exception type."""


class Item(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=1)
    price: float = pydantic.Field(gt=0)
    description: str | None = None


def login_answer(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "user": body.get("username"),
        "access_token": ACCESS_TOKEN,
        "refreshToken": REFRESH_TOKEN,
        "token_type": "bearer",
    }


def payment_answer(body: dict[str, Any]) -> dict[str, Any]:
    return {"status": "accepted", "amount": body.get("amount"), "last4": str(body.get("card_number"))[-4:]}


def boom() -> None:
    raise BoomError("kaboom: item 7 is cursed")


def identify(api_key: str | None, request: Request | None = None) -> None:
    """Identify the consumer of ``api_key`` with each side's own ``set_consumer``."""
    known = API_KEYS.get(api_key or "")
    if known is None:
        return
    identifier, name, group = known
    if SIDE == "official" and request is not None:  # FastAPI: on request.state
        from apitally.fastapi import set_consumer

        set_consumer(request, identifier, name=name, group=group)
    elif SIDE == "official":  # Flask: on flask.g
        from apitally.flask import set_consumer as set_flask_consumer

        set_flask_consumer(identifier, name=name, group=group)
    elif SIDE == "spanlytics":
        import spanlytics

        spanlytics.set_consumer(identifier, name=name, group=group)


# --- FastAPI ------------------------------------------------------------------------------


async def fastapi_identify(request: Request) -> None:
    identify(request.headers.get("x-api-key"), request)


fastapi_app = FastAPI(dependencies=[Depends(fastapi_identify)])


@fastapi_app.get("/healthz", response_class=HTMLResponse)
async def fastapi_healthz() -> str:
    return HEALTHY


@fastapi_app.get("/items")
async def fastapi_list_items() -> list[dict[str, Any]]:
    return CATALOGUE


@fastapi_app.get("/items/{item_id}")
async def fastapi_get_item(item_id: int, page: int = 1) -> dict[str, Any]:
    return {"id": item_id, "name": f"item {item_id}", "page": page}


@fastapi_app.post("/items", status_code=201)
async def fastapi_create_item(item: Item) -> dict[str, Any]:
    return {"id": 101, **item.model_dump(exclude_none=True)}


@fastapi_app.get("/boom")
async def fastapi_boom() -> None:
    boom()


@fastapi_app.get("/slow")
def fastapi_slow() -> dict[str, bool]:
    time.sleep(SLOW_S)
    return {"slow": True}


@fastapi_app.post("/login")
async def fastapi_login(request: Request) -> dict[str, Any]:
    return login_answer(await request.json())


@fastapi_app.post("/payments")
async def fastapi_payments(request: Request) -> dict[str, Any]:
    return payment_answer(await request.json())


# --- Flask --------------------------------------------------------------------------------

flask_app = flask.Flask(__name__)


@flask_app.before_request
def flask_identify() -> None:
    identify(flask.request.headers.get("X-API-Key"))


@flask_app.get("/healthz")
def flask_healthz() -> str:
    return HEALTHY  # text/html


@flask_app.get("/items")
def flask_list_items() -> flask.Response:
    return flask.jsonify(CATALOGUE)


@flask_app.get("/items/<int:item_id>")
def flask_get_item(item_id: int) -> dict[str, Any]:
    return {"id": item_id, "name": f"item {item_id}", "page": flask.request.args.get("page", 1, type=int)}


@flask_app.post("/items")
def flask_create_item() -> tuple[dict[str, Any], int]:
    try:
        item = Item.model_validate(flask.request.get_json())
    except pydantic.ValidationError as exc:  # answered as FastAPI would, so both count it
        detail = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return {"detail": detail}, 422
    return {"id": 101, **item.model_dump(exclude_none=True)}, 201


@flask_app.get("/boom")
def flask_boom() -> None:
    boom()


@flask_app.get("/slow")
def flask_slow() -> dict[str, bool]:
    time.sleep(SLOW_S)
    return {"slow": True}


@flask_app.post("/login")
def flask_login() -> dict[str, Any]:
    return login_answer(flask.request.get_json())


@flask_app.post("/payments")
def flask_payments() -> dict[str, Any]:
    return payment_answer(flask.request.get_json())


# --- the set-ups --------------------------------------------------------------------------

LOGGING = {
    "enable_request_logging": True,
    "log_request_headers": True,
    "log_request_body": True,
    "log_response_body": True,
}

if SIDE == "official":
    from apitally.fastapi import ApitallyMiddleware as FastAPIApitally
    from apitally.flask import ApitallyMiddleware as FlaskApitally

    if os.environ.get("DIFF_FRAMEWORK") == "fastapi":  # one client per process (a singleton)
        fastapi_app.add_middleware(FastAPIApitally, client_id=CLIENT_ID, env="prod", **LOGGING)
    else:
        flask_app.wsgi_app = FlaskApitally(flask_app, client_id=CLIENT_ID, env="prod", **LOGGING)
elif SIDE == "spanlytics":
    import spanlytics

    spanlytics.configure(
        destinations="apitally",
        apitally_client_id=CLIENT_ID,
        apitally_env="prod",
        apitally_base_url=os.environ["DIFF_HUB_URL"],
        apitally_request_logging=True,
        apitally_log_request_headers=True,
        apitally_log_request_body=True,
        apitally_log_response_body=True,
    )
    if os.environ.get("DIFF_FRAMEWORK") == "fastapi":
        spanlytics.instrument_app(fastapi_app)
    else:
        spanlytics.instrument_app(flask_app)
elif SIDE:
    raise RuntimeError(f"DIFF_SIDE must be 'official' or 'spanlytics', not {SIDE!r}")
