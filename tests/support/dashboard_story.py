"""A store that looks like an hour of a real API, for the README's screenshots: the demo's
endpoints and consumers, traffic that rises and falls over the last hour, a burst of server
errors, slow report calls and masked logins. The records are masked by spanlytics' own
:class:`~spanlytics.masking.core.Masker` and written by the local store's destination, as the
exporter would; only their times are chosen, so the charts have an hour to show."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

from spanlytics.config import Settings
from spanlytics.consumer import Consumer
from spanlytics.destinations.registry import build_destinations
from spanlytics.masking.core import Masker
from spanlytics.record import ExceptionInfo, RequestRecord

CONSUMERS = (
    Consumer("acme", "Acme Corp", "enterprise"),
    Consumer("globex", "Globex", "enterprise"),
    Consumer("initech", "Initech", "startup"),
    Consumer("umbrella", "Umbrella", "trial"),
)
ENDPOINTS = (  # method, route, share of the traffic, median ms
    ("GET", "/items/{item_id}", 50, 4.0),
    ("GET", "/items", 20, 9.0),
    ("POST", "/items", 12, 14.0),
    ("POST", "/login", 8, 35.0),
    ("GET", "/reports/slow", 4, 260.0),
    ("GET", "/debug/boom", 1, 3.0),
)
STACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/main.py", line 88, in boom\n'
    '    raise RuntimeError("inventory service unavailable")\n'
    "RuntimeError: inventory service unavailable\n"
)


def _record(rng: random.Random, i: int, start_ns: int, burst: bool) -> RequestRecord:
    method, route, _, median = rng.choices(ENDPOINTS, [e[2] for e in ENDPOINTS])[0]
    consumer = rng.choices(CONSUMERS, (45, 30, 18, 7))[0]
    item = rng.randrange(1, 500)
    path = route.replace("{item_id}", str(item))
    status, body, answer, exception = 200, None, json.dumps({"id": item, "name": f"item {item}"}), None
    if route == "/login":
        body = json.dumps({"user": f"{consumer.identifier}-admin", "password": f"pw-{rng.getrandbits(40):x}"})
        answer = json.dumps({"token": f"tok_{rng.getrandbits(64):x}", "expires_in": 3600})
    elif method == "POST":
        body = json.dumps({"name": f"widget {item}", "price": item / 10})
        status = 422 if rng.random() < 0.08 else 201
    elif route == "/debug/boom" or (burst and rng.random() < 0.15):
        status, answer = 500, json.dumps({"detail": "Internal Server Error"})
        exception = ExceptionInfo("RuntimeError", "inventory service unavailable", STACK)
    elif route == "/items/{item_id}" and rng.random() < 0.05:
        status, answer = 404, json.dumps({"detail": "Not Found"})
    duration = rng.lognormvariate(math.log(median), 0.45) * (4 if burst else 1)
    return RequestRecord(
        record_id=f"story-{i:06d}",
        trace_id=f"{rng.getrandbits(128):032x}",
        span_id=f"{rng.getrandbits(64):016x}",
        start_time_ns=start_ns,
        duration_ms=duration,
        method=method,
        route=route,
        path=path,
        url=f"https://api.example.com{path}",
        query="verbose=1" if rng.random() < 0.1 else "",
        status=status,
        host="api.example.com",
        client_ip=f"203.0.113.{rng.randrange(2, 250)}",
        user_agent="example-client/2.3",
        request_headers=(
            ("authorization", f"Bearer sk_live_{rng.getrandbits(64):x}"),
            ("accept", "application/json"),
            ("user-agent", "example-client/2.3"),
        ),
        response_headers=(("content-type", "application/json"),),
        request_content_type=None if body is None else "application/json",
        response_content_type="application/json",
        request_body=body,
        response_body=answer,
        request_size=None if body is None else len(body),
        response_size=len(answer),
        consumer=consumer,
        exception=exception,
        service_name="inventory-api",
    )


def fill_story(db: Path, minutes: int = 60, seed: int = 3) -> int:
    """Write about 40 requests a minute over the last ``minutes`` to the local store ``db``
    (rising and falling, with a burst of slow server errors in the middle); the number
    written."""
    rng = random.Random(seed)
    masker = Masker()
    now = time.time_ns()
    records = []
    for minute in range(minutes):
        rate = int(30 + 20 * math.sin(minute / minutes * 2 * math.pi) + rng.randrange(10))
        burst = minutes // 2 <= minute < minutes // 2 + 4
        first = now - (minutes - minute) * 60 * 10**9
        for k in range(rate):
            start = first + k * 60 * 10**9 // rate
            records.append(masker.mask_record(_record(rng, len(records), start, burst)))
    settings = Settings.resolve(destinations=("local",), local_path=str(db), retention_s="off")
    (store,) = build_destinations(settings)
    store.export(records)
    store.shutdown(30.0)
    return len(records)


__all__ = ["fill_story"]
