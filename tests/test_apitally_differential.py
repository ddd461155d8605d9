"""Differential test: our Apitally destination against the official ``apitally`` 0.x client.

The same API (tests/support/apitally_diff_apps.py) runs four times at once: as a FastAPI app
under uvicorn and as a Flask app under gunicorn (one sync worker: the client keeps its state
per process), each once with the official middleware and once with spanlytics, all reporting
to one ApitallyHub stub under their own client id. The same requests go to each, in the same
order; then every server is stopped with SIGTERM, on which both clients send a last sync and
log upload.

Per framework, what each side sent becomes a view: the startup message, the request counts
summed over every sync, validation and server errors, consumers, the log items in traffic
order, and the responses as the HTTP client got them. The views are compared field by field.
Every field must be equal, or explained by one of DIFFERENCES; each asserts that it really
holds where it says, so the table cannot go stale. Set aside as different by nature (checked
for shape only): instance and message uuids, log uuids, timestamps, the number and timing of
syncs, the servers' ports and the CPU/memory figures.

Waiting, never sleeping: the official clients move queued log items into their upload file
once a second and not at shutdown, so items of the last second before SIGTERM are never sent.
The fixture polls the stub until the official clients' periodic upload (every 10 s) carried
every request, and only then stops the servers.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from tests.support.apitally_diff_apps import ACCESS_TOKEN, API_KEYS, REFRESH_TOKEN, SLOW_S
from tests.support.apitally_hub import ApitallyHub, Message
from tests.support.servers import (
    ServerProcess,
    free_port,
    gunicorn_argv,
    poll_until,
    start_server,
    uvicorn_argv,
)

FRAMEWORKS = ("fastapi", "flask")
OFFICIAL, OURS = "official", "spanlytics"
SIDES = (OFFICIAL, OURS)
THEIR_MASK, OUR_MASK = "******", "[masked]"
CASE_HEADER = "X-Diff-Case"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ANN, BOB, CY, DEE = API_KEYS  # DEE only ever calls an unmatched path
LOGGED_TYPES = ("application/json", "application/problem+json", "application/vnd.api+json", "text/plain")

# Secrets in the traffic. The client misses the last three (its gaps); spanlytics masks all.
QUERY_TOKEN, BEARER, PASSWORD, CARD, NESTED_SECRET = (
    "qs-token-77aa01",
    "Bearer bearer-secret-3c3c",
    "pw-hunter2-xyz",
    "4111111111111111",
    "nested-secret-8e8e",
)
QUERY_API_KEY, CAMEL_CARD, BODY_API_KEY = "qs-apikey-6f1e0b", "4222222222222222", "body-apikey-5d5d"
THEY_LEAK = (QUERY_API_KEY, CAMEL_CARD, BODY_API_KEY)
SECRETS = (
    QUERY_TOKEN,
    BEARER,
    PASSWORD,
    CARD,
    NESTED_SECRET,
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    *API_KEYS,
    *THEY_LEAK,
)
EXTRA_MASKED = {("query", "api_key"), ("body", "cardNumber"), ("body", "apiKey")}  # (where, name)


@dataclasses.dataclass(frozen=True)
class Difference:
    name: str
    why: str
    frameworks: tuple[str, ...] = FRAMEWORKS  # where it must hold (and only there)


# Every intended difference between what the official client and spanlytics send, in the order
# they are reconciled: each one's function (``@reconciles(name)`` below) asserts that it holds,
# then removes it, before the next looks. Anything else must be equal.
#
# Equal in both, so deliberately not listed: the client string, the announced paths (once
# normalised here), FastAPI's OpenAPI document, request counts and size sums, response size
# histograms, FastAPI's validation errors, server error types, messages and counts, consumers
# with names and groups, log request methods, URLs, header values and order, request sizes
# (none without a body, as Content-Length gives), consumers and bodies (JSON-decoded: the
# client re-serialises them after masking), response status codes, headers and bodies,
# exception types and messages; unmatched routes (a 404 from the router) are counted by
# neither and logged by both without a path.
DIFFERENCES = (
    Difference(
        "health checks counted",
        "the client keeps /healthz out of the log only; spanlytics' exclusions keep probes out of "
        "the counts as well (both still announce the route)",
    ),
    Difference(
        "route template syntax",
        "the client reports Flask's /items/<int:item_id>; spanlytics one syntax for every framework, "
        "/items/{item_id}, in the startup paths, the counts and the log alike",
        ("flask",),
    ),
    Difference(
        "startup method case",
        "the client lists Starlette's endpoints as 'get'/'post' (SchemaGenerator); spanlytics upper case",
        ("fastapi",),
    ),
    Difference(
        "versions",
        "the client reports apitally; spanlytics reports spanlytics and opentelemetry-sdk; the "
        "framework's and servers' packages agree",
    ),
    Difference(
        "resources on the first sync",
        "the client's first sync has resources null (psutil's first CPU sample); spanlytics samples "
        "at start, so its first sync has figures",
    ),
    Difference(
        "header name case",
        "the client logs Werkzeug's Title-Case header names; spanlytics lower case (values agree)",
        ("flask",),
    ),
    Difference(
        "500 responses after an unhandled exception",
        "the client's middleware runs inside Starlette's ServerErrorMiddleware and never sees the "
        "500 it sends (no size, headers or body); spanlytics wraps the whole stack and records it",
        ("fastapi",),
    ),
    Difference(
        "response times",
        "the client stops its clock at the response start (ASGI) or when the WSGI app returns; "
        "spanlytics at the last byte sent: histograms hold the same number of requests, and /slow "
        "is at 120 ms or more in both",
    ),
    Difference(
        "validation errors on Flask",
        "only the client's Starlette middleware counts FastAPI-shaped 422 bodies; spanlytics counts "
        "them from any framework",
        ("flask",),
    ),
    Difference(
        "response bodies emptied by the official Flask middleware",
        "with log_response_body it consumes the response iterator to read the body and returns it "
        "spent: the client gets no body under the original Content-Length. spanlytics tees the "
        "body and never changes a response",
        ("flask",),
    ),
    Difference(
        "traceback start",
        "each traceback starts at its own outermost frame (the client's middleware or Flask; "
        "OpenTelemetry's); from the app's frames to the last line they are identical",
    ),
    Difference(
        "blank query values",
        "the client rebuilds the query with urlencode(parse_qsl(query)), which drops ?flag=; "
        "spanlytics logs the query as sent, masking values in place",
    ),
    Difference(
        "masked value placeholder",
        f"the client writes {THEIR_MASK!r}, spanlytics {OUR_MASK!r}, in headers, query and bodies",
    ),
    Difference(
        "more masking",
        "spanlytics also masks what the client leaks: api_key query parameters, camelCase "
        "cardNumber and apiKey body fields",
    ),
)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    method: str
    target: str  # path and query, as sent
    key: str | None  # X-API-Key, which both map to a consumer with a name and a group
    status: int = 200
    json: dict[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Sent:
    """A response as the HTTP client got it."""

    status: int
    content_type: str
    complete: bool  # the body arrived whole (Content-Length bytes)


CASES = (
    Case("get-item", "GET", "/items/1", ANN),
    Case("get-item-again", "GET", "/items/2", ANN),
    Case("list", "GET", "/items", BOB),  # ~1.9 kB: response size bucket 1
    Case("query-secrets", "GET", f"/items/3?page=2&api_key={QUERY_API_KEY}&token={QUERY_TOKEN}", BOB),
    Case("bearer", "GET", "/items/4?page=5&flag=", CY, headers=(("Authorization", BEARER),)),
    Case("create", "POST", "/items", BOB, 201, {"name": "Widget", "price": 3.5}),
    Case(
        "create-large", "POST", "/items", CY, 201, {"name": "Tome", "price": 12.0, "description": "x" * 2100}
    ),
    Case("invalid", "POST", "/items", BOB, 422, {"name": "", "price": -1}),
    Case("invalid-missing", "POST", "/items", CY, 422, {"price": 2}),
    Case("invalid-again", "POST", "/items", BOB, 422, {"name": "", "price": -1}),
    Case("boom", "GET", "/boom", ANN, 500),
    Case("slow", "GET", "/slow", CY),
    Case("login", "POST", "/login", None, 200, {"username": "alice", "password": PASSWORD, "remember": True}),
    Case(
        "payment",
        "POST",
        "/payments",
        ANN,
        200,
        {
            "amount": 12.5,
            "card_number": CARD,
            "cardNumber": CAMEL_CARD,
            "apiKey": BODY_API_KEY,
            "meta": {"secret": NESTED_SECRET, "notes": ["gift"]},
        },
    ),
    Case("unmatched", "GET", "/nope", DEE, 404),
    Case("boom-anonymous", "GET", "/boom", None, 500),
)


def send(case: Case, base_url: str) -> Sent:
    headers = {CASE_HEADER: case.name, **dict(case.headers)}
    if case.key is not None:
        headers["X-API-Key"] = case.key
    url = base_url + case.target
    response = requests.request(case.method, url, json=case.json, headers=headers, timeout=10, stream=True)
    try:
        _ = response.content
        complete = True
    except requests.RequestException:  # fewer bytes than Content-Length, then the connection closed
        complete = False
    finally:
        response.close()
    assert response.status_code == case.status, (case.name, response.status_code)
    return Sent(response.status_code, response.headers.get("Content-Type", ""), complete)


# --- running the four servers -----------------------------------------------------------------


@dataclasses.dataclass
class Run:
    framework: str
    side: str
    client_id: str
    server: ServerProcess
    hub: ApitallyHub
    sent: list[Sent] = dataclasses.field(default_factory=list)

    def messages(self, kind: str) -> list[Message]:
        return [m for m in self.hub.of(kind) if m.client_id == self.client_id and m.env == "prod"]

    def log_items(self) -> list[dict[str, Any]]:
        return [item for m in self.messages("log") for item in m.log_items()]


def start(framework: str, side: str, hub: ApitallyHub, tmp: Path) -> Run:
    port = free_port()
    client_id = str(uuid.uuid4())
    inherited = {name: "" for name in os.environ if name.startswith(("SPANLYTICS_", "APITALLY_"))}
    env = {
        **inherited,  # "" is unset for both
        "DIFF_SIDE": side,
        "DIFF_FRAMEWORK": framework,
        "DIFF_CLIENT_ID": client_id,
        "DIFF_HUB_URL": hub.url,
        "APITALLY_HUB_BASE_URL": hub.url,
        "SPANLYTICS_SPOOL_DIR": str(tmp / f"spool-{framework}-{side}"),
    }
    app = f"tests.support.apitally_diff_apps:{framework}_app"
    if framework == "fastapi":
        argv = uvicorn_argv(app, port)
    else:  # --no-control-socket: two gunicorn masters at once
        argv = gunicorn_argv(app, port, "--workers", "1", "--worker-class", "sync", "--no-control-socket")
    return Run(framework, side, client_id, start_server(argv, port=port, env=env, log_dir=tmp), hub)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[tuple[str, str], Run]]:
    tmp = tmp_path_factory.mktemp("apitally-differential")
    hub = ApitallyHub()
    with ThreadPoolExecutor(4) as pool:  # one process per framework and side; they start in parallel
        futures = {(fw, side): pool.submit(start, fw, side, hub, tmp) for fw in FRAMEWORKS for side in SIDES}
    started = {pair: future.result() for pair, future in futures.items() if future.exception() is None}
    try:
        for future in futures.values():
            future.result()  # a server that did not start fails the module, after the others stop
        for case in CASES:
            for run in started.values():
                run.sent.append(send(case, run.server.base_url))

        def uploaded_by_official() -> bool:
            return all(len(r.log_items()) >= len(CASES) for r in started.values() if r.side == OFFICIAL)

        poll_until(uploaded_by_official, 30, "the official clients' periodic log upload")
    finally:
        with ThreadPoolExecutor(4) as pool:  # SIGTERM: both clients send a last sync and log upload
            list(pool.map(lambda run: run.server.stop(), started.values()))
        hub.close()
    yield started


# --- views --------------------------------------------------------------------------------------

View = dict[str, Any]
Path_ = tuple[Any, ...]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


def decoded_body(body: str) -> Any:
    raw = base64.b64decode(body)
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


def log_view(item: dict[str, Any], port: int) -> dict[str, Any]:
    """A log item with its uuid and timestamp checked and set aside, the URL split, bodies decoded."""
    item = copy.deepcopy(item)
    assert UUID4.match(item.pop("uuid"))
    request, response = item["request"], item["response"]
    assert isinstance(request.pop("timestamp"), float)
    url = urlsplit(request.pop("url"))
    assert url.netloc == f"127.0.0.1:{port}"
    request["url"] = f"{url.scheme}://SERVER{url.path}"
    request["query"] = [list(pair) for pair in parse_qsl(url.query, keep_blank_values=True)]
    for header in request.get("headers", []):
        header[1] = header[1].replace(url.netloc, "SERVER")  # Host
    for part in (request, response):
        if "body" in part:
            part["body"] = decoded_body(part["body"])
    return item


def view_of(run: Run) -> View:
    startups = [m.json() for m in run.messages("startup")]
    assert len(startups) == 1, f"{run.side} sent {len(startups)} startup messages"
    startup, syncs = startups[0], [m.json() for m in run.messages("sync")]
    assert len({m["instance_uuid"] for m in (startup, *syncs)}) == 1
    for message in (startup, *syncs):
        assert UUID4.match(message["instance_uuid"]) and UUID4.match(message["message_uuid"])
    assert all(isinstance(sync["timestamp"], float) for sync in syncs)
    requests_: dict[tuple[Any, ...], dict[str, Any]] = {}
    validation: Counter[tuple[Any, ...]] = Counter()
    server: dict[tuple[Any, ...], dict[str, Any]] = {}
    for sync in syncs:
        for entry in sync["requests"]:
            key = (entry["consumer"], entry["method"], entry["path"], entry["status_code"])
            total = requests_.setdefault(
                key, {"request_count": 0, "request_size_sum": 0, "response_size_sum": 0}
            )
            for name in ("request_count", "request_size_sum", "response_size_sum"):
                total[name] += entry[name]
            for name in ("response_times", "request_sizes", "response_sizes"):
                total.setdefault(name, Counter()).update({int(k): v for k, v in entry[name].items()})
        for error in sync["validation_errors"]:
            loc = tuple(error["loc"])
            key = (error["consumer"], error["method"], error["path"], loc, error["msg"], error["type"])
            validation[key] += error["error_count"]
        for error in sync["server_errors"]:
            key = (error["consumer"], error["method"], error["path"], error["type"], error["msg"])
            known = server.setdefault(key, {"error_count": 0, "traceback": error["traceback"]})
            assert known["traceback"] == error["traceback"]
            known["error_count"] += error["error_count"]
            known["sentry_event_id"] = error["sentry_event_id"]
    for entry in requests_.values():  # an empty histogram bucket says nothing; compare without
        for name in ("response_times", "request_sizes", "response_sizes"):
            entry[name] = {k: v for k, v in entry[name].items() if v}
    resources = [s["resources"] for s in syncs]
    return {
        "startup": {
            "paths": {(p["method"], p["path"]) for p in startup["paths"]},
            "client": startup["client"],
            "versions": startup["versions"],
            "openapi": json.loads(startup["openapi"]) if "openapi" in startup else None,
        },
        "requests": requests_,
        "validation_errors": dict(validation),
        "server_errors": server,
        "consumers": {(c["identifier"], c["name"], c["group"]) for s in syncs for c in s["consumers"]},
        "resources": {
            "first": None if resources[0] is None else sorted(resources[0]),
            "any": any(r is not None and sorted(r) == ["cpu_percent", "memory_rss"] for r in resources),
        },
        "log": [log_view(item, run.server.port) for item in run.log_items()],
        "responses": [dataclasses.asdict(sent) for sent in run.sent],
    }


def differences(a: Any, b: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=repr):
            yield from differences(a.get(key, MISSING), b.get(key, MISSING), (*path, key))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from differences(x, y, (*path, index))
    elif a != b or type(a) is not type(b):
        yield path, a, b


def leaves(obj: Any, path: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from leaves(value, (*path, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from leaves(value, (*path, index))
    else:
        yield path, obj


def get_at(obj: Any, path: Path_) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def set_at(obj: Any, path: Path_, value: Any) -> None:
    get_at(obj, path[:-1])[path[-1]] = value


def field_name(item: dict[str, Any], path: Path_) -> tuple[str, str]:
    """(where, name) of a leaf of a log item: ("query", "api_key"), ("body", "cardNumber")..."""
    part = path[1]
    if part in ("headers", "query"):  # [name, value] pairs
        return part, str(get_at(item, (*path[:-1], 0)))
    return part, str(path[-1])


def pairs(ours: View, theirs: View) -> Iterator[tuple[Case, dict[str, Any], dict[str, Any]]]:
    yield from zip(CASES, ours["log"], theirs["log"], strict=True)


def remap_paths(view: View, rename: Callable[[str], str]) -> None:
    """Apply ``rename`` to every route template of a view."""
    view["startup"]["paths"] = {(m, rename(p)) for m, p in view["startup"]["paths"]}
    for name in ("requests", "validation_errors", "server_errors"):
        view[name] = {(k[0], k[1], rename(k[2]), *k[3:]): v for k, v in view[name].items()}
    for item in view["log"]:
        if "path" in item["request"]:
            item["request"]["path"] = rename(item["request"]["path"])


# --- the intended differences -------------------------------------------------------------------

Reconcile = Callable[[View, View], None]
RECONCILERS: dict[str, Reconcile] = {}


def reconciles(name: str) -> Callable[[Reconcile], Reconcile]:
    """Register the function that checks and removes the difference ``name`` of DIFFERENCES."""
    assert name in {d.name for d in DIFFERENCES} and name not in RECONCILERS, name

    def register(function: Reconcile) -> Reconcile:
        RECONCILERS[name] = function
        return function

    return register


@reconciles("health checks counted")
def health_checks(ours: View, theirs: View) -> None:
    probes = (None, "GET", "/healthz", 200)  # start_server's readiness probes
    assert theirs["requests"].pop(probes)["request_count"] >= 1
    assert not [key for key in ours["requests"] if key[2] == "/healthz"]
    assert ("GET", "/healthz") in ours["startup"]["paths"]  # announced, only not counted


@reconciles("route template syntax")
def flask_route_syntax(ours: View, theirs: View) -> None:
    assert ("GET", "/items/<int:item_id>") in theirs["startup"]["paths"]
    assert all("<" not in path for _, path in ours["startup"]["paths"])
    remap_paths(theirs, lambda path: re.sub(r"<(?:[^<>:]+:)?([^<>:]+)>", r"{\1}", path))


@reconciles("startup method case")
def startup_method_case(ours: View, theirs: View) -> None:
    assert all(method.islower() for method, _ in theirs["startup"]["paths"])
    assert all(method.isupper() for method, _ in ours["startup"]["paths"])
    theirs["startup"]["paths"] = {(method.upper(), path) for method, path in theirs["startup"]["paths"]}


@reconciles("versions")
def versions(ours: View, theirs: View) -> None:
    mine, their = ours["startup"].pop("versions"), theirs["startup"].pop("versions")
    assert {k: mine[k] for k in set(mine) & set(their)} == {k: their[k] for k in set(mine) & set(their)}
    assert set(their) - set(mine) == {"apitally"}
    assert set(mine) - set(their) == {"spanlytics", "opentelemetry-sdk"}
    assert {"python", "uvicorn", "gunicorn"} <= set(mine) & set(their)


@reconciles("resources on the first sync")
def first_sync_resources(ours: View, theirs: View) -> None:
    assert theirs["resources"]["first"] is None
    assert ours["resources"]["first"] == ["cpu_percent", "memory_rss"]
    theirs["resources"]["first"] = ours["resources"]["first"]


@reconciles("header name case")
def header_name_case(ours: View, theirs: View) -> None:
    for _, mine, their in pairs(ours, theirs):
        for part in ("request", "response"):
            assert all(name == name.lower() for name, _ in mine[part].get("headers", []))
            assert any(name != name.lower() for name, _ in their[part].get("headers", []))
            for header in their[part].get("headers", []):
                header[0] = header[0].lower()


@reconciles("500 responses after an unhandled exception")
def unseen_500_response(ours: View, theirs: View) -> None:
    size = len("Internal Server Error")  # what Starlette's ServerErrorMiddleware sends
    errors = [key for key in ours["requests"] if key[3] == 500]
    assert errors
    for key in errors:
        mine, their = ours["requests"][key], theirs["requests"][key]
        assert (their["response_size_sum"], their["response_sizes"]) == (0, {})
        assert (mine["response_size_sum"], mine["response_sizes"]) == (
            size * mine["request_count"],
            {0: mine["request_count"]},
        )
        mine["response_size_sum"], mine["response_sizes"] = 0, {}
    for case, mine, their in pairs(ours, theirs):
        if case.status == 500:
            assert set(their["response"]) == {"status_code", "response_time"}
            assert mine["response"].pop("body") == "Internal Server Error"
            assert mine["response"].pop("size") == size
            assert dict(mine["response"].pop("headers"))["content-type"].startswith("text/plain")


@reconciles("response times")
def response_times(ours: View, theirs: View) -> None:
    for key, mine in ours["requests"].items():
        their = theirs["requests"][key]
        assert sum(mine["response_times"].values()) == sum(their["response_times"].values()) > 0, key
        if key[2] == "/slow":
            assert (
                min(mine["response_times"]) >= SLOW_S * 1000 and min(their["response_times"]) >= SLOW_S * 1000
            )
        mine["response_times"] = their["response_times"] = sum(mine["response_times"].values())
    for case, mine, their in pairs(ours, theirs):
        took = (mine["response"].pop("response_time"), their["response"].pop("response_time"))
        assert all(isinstance(t, float) and t >= (SLOW_S if case.name == "slow" else 0) for t in took)


@reconciles("validation errors on Flask")
def flask_validation_errors(ours: View, theirs: View) -> None:
    assert theirs["validation_errors"] == {}
    counted: Counter[tuple[Any, ...]] = Counter()
    for case, mine, _ in pairs(ours, theirs):
        if case.status == 422:
            consumer = API_KEYS[case.key][0] if case.key else None
            for error in mine["response"]["body"]["detail"]:
                loc = tuple(error["loc"])
                counted[(consumer, "POST", "/items", loc, error["msg"], error["type"])] += 1
    assert counted and ours["validation_errors"] == dict(counted)
    ours["validation_errors"] = {}


@reconciles("response bodies emptied by the official Flask middleware")
def flask_emptied_bodies(ours: View, theirs: View) -> None:
    for mine, their in zip(ours["responses"], theirs["responses"], strict=True):
        assert mine["complete"]
        assert their["complete"] is not their["content_type"].lower().startswith(LOGGED_TYPES)
        their["complete"] = True


@reconciles("traceback start")
def traceback_start(ours: View, theirs: View) -> None:
    errors = [(mine, theirs["server_errors"][key]) for key, mine in ours["server_errors"].items()]
    logged = [
        (mine["exception"], their["exception"])
        for _, mine, their in pairs(ours, theirs)
        if "exception" in mine
    ]
    assert len(errors) == len(logged) == 2  # /boom by a consumer and anonymously
    for mine, their in errors + logged:
        assert mine["traceback"] != their["traceback"]
        assert from_the_app_on(mine["traceback"]) == from_the_app_on(their["traceback"])
        their["traceback"] = mine["traceback"]


def from_the_app_on(traceback: str) -> str:
    """The traceback from the first frame in the app's module on: the same for both."""
    lines = traceback.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[-1] == "tests.support.apitally_diff_apps.BoomError: kaboom: item 7 is cursed"
    first = next(i for i, line in enumerate(lines) if "apitally_diff_apps.py" in line)
    return "\n".join(lines[first:])


@reconciles("blank query values")
def blank_query_values(ours: View, theirs: View) -> None:
    blanks = 0
    for _, mine, their in pairs(ours, theirs):
        for pair in [pair for pair in mine["request"]["query"] if pair[1] == ""]:
            assert pair not in their["request"]["query"]
            mine["request"]["query"].remove(pair)
            blanks += 1
    assert blanks


@reconciles("masked value placeholder")
def placeholder(ours: View, theirs: View) -> None:
    seen = 0
    for _, mine, their in pairs(ours, theirs):
        for path, value in leaves(their):
            if value == THEIR_MASK:
                assert get_at(mine, path) == OUR_MASK, path
                set_at(their, path, OUR_MASK)
                seen += 1
    assert seen


@reconciles("more masking")
def more_masking(ours: View, theirs: View) -> None:
    extras = set()
    for case, mine, their in pairs(ours, theirs):
        for path, value in leaves(mine):
            if value == OUR_MASK and get_at(their, path) != OUR_MASK:
                where = field_name(mine, path)
                assert where in EXTRA_MASKED and get_at(their, path) in THEY_LEAK, (case.name, path)
                set_at(their, path, OUR_MASK)
                extras.add(where)
    assert extras == EXTRA_MASKED


# --- tests --------------------------------------------------------------------------------------


def test_every_difference_has_its_reconciler() -> None:
    assert list(RECONCILERS) == [d.name for d in DIFFERENCES]  # registered in the table's order


def views(runs: dict[tuple[str, str], Run], framework: str) -> tuple[View, View]:
    return view_of(runs[(framework, OURS)]), view_of(runs[(framework, OFFICIAL)])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_both_log_every_request_once_in_order(runs: dict[tuple[str, str], Run], framework: str) -> None:
    for side in (OFFICIAL, OURS):
        items = runs[(framework, side)].log_items()
        cases = [{k.lower(): v for k, v in item["request"]["headers"]}[CASE_HEADER.lower()] for item in items]
        assert cases == [case.name for case in CASES], side  # readiness probes are logged by neither


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_spanlytics_counts_match_the_traffic(runs: dict[tuple[str, str], Run], framework: str) -> None:
    ours, _ = views(runs, framework)
    expected: Counter[tuple[Any, ...]] = Counter()
    for case in CASES:
        if case.target != "/nope":
            route = "/items/{item_id}" if re.match(r"/items/\d", case.target) else case.target.split("?")[0]
            consumer = API_KEYS[case.key][0] if case.key else None
            expected[(consumer, case.method, route, case.status)] += 1
    assert {key: entry["request_count"] for key, entry in ours["requests"].items()} == dict(expected)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_resources_are_reported_by_both(runs: dict[tuple[str, str], Run], framework: str) -> None:
    for view in views(runs, framework):
        assert view["resources"]["any"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_spanlytics_masks_everything_the_client_masks(
    runs: dict[tuple[str, str], Run], framework: str
) -> None:
    ours, theirs = views(runs, framework)
    masked = 0
    for case, mine, their in pairs(ours, theirs):
        for path, value in leaves(their):
            if value == THEIR_MASK:
                assert get_at(mine, path) == OUR_MASK, (case.name, path)
                masked += 1
    assert masked >= len(CASES)  # at least the X-API-Key header of every identified request


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_no_secret_reaches_the_hub_from_spanlytics(runs: dict[tuple[str, str], Run], framework: str) -> None:
    def everything(run: Run) -> str:
        texts = [m.raw.decode() for kind in ("startup", "sync") for m in run.messages(kind)]
        for item in run.log_items():
            for part in ("request", "response"):
                if "body" in item[part]:
                    item[part]["body"] = base64.b64decode(item[part]["body"]).decode()
            texts.append(json.dumps(item))
        return "\n".join(texts)

    assert [s for s in SECRETS if s in everything(runs[(framework, OURS)])] == []
    official = everything(runs[(framework, OFFICIAL)])
    assert [s for s in SECRETS if s in official] == list(THEY_LEAK)  # what the comparison is about


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_field_is_equal_or_an_intended_difference(
    runs: dict[tuple[str, str], Run], framework: str
) -> None:
    ours, theirs = views(runs, framework)
    for case, mine, their in pairs(ours, theirs):
        assert (mine["request"]["method"], mine["request"]["url"], mine["response"]["status_code"]) == (
            their["request"]["method"],
            their["request"]["url"],
            their["response"]["status_code"],
        ), case.name
    for difference in DIFFERENCES:
        if framework in difference.frameworks:
            try:
                RECONCILERS[difference.name](ours, theirs)
            except (AssertionError, KeyError, StopIteration) as exc:
                raise AssertionError(
                    f"{framework}: intended difference {difference.name!r} does not hold"
                ) from exc
    unexplained = list(differences(ours, theirs))
    assert not unexplained, f"{framework}: (path, ours, official) not in DIFFERENCES: {unexplained}"
