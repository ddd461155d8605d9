"""The demo's request mix: reads, writes, 401/404/422/500 and a slow call from four consumers."""

from __future__ import annotations

from typing import Any

import requests

from spanlytics.demo.data import API_KEYS


def drive_traffic(base: str, rounds: int) -> int:
    """Send ``rounds`` rounds (about 45 requests each) to the service at ``base``; return the count."""
    keys = list(API_KEYS)
    sent = 0
    with requests.Session() as http:

        def call(method: str, path: str, key: str | None = None, **kwargs: Any) -> None:
            nonlocal sent
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            try:
                http.request(method, base + path, headers=headers, timeout=10, **kwargs)
            except requests.ConnectionError:
                # uvicorn closes a kept-alive connection after an unhandled error; reconnect once.
                http.close()
                http.request(method, base + path, headers=headers, timeout=10, **kwargs)
            sent += 1

        for round_no in range(rounds):
            for weight, key in zip((4, 2, 1, 1), keys, strict=False):
                for _ in range(weight):
                    call("GET", "/items", key)
                    call("GET", f"/items/{1 + round_no % 3}", key)
                call(
                    "POST", "/items", key, json={"name": f"Widget {round_no}", "price": 9.5, "tags": ["demo"]}
                )
                call("POST", "/items", key, json={"name": "", "price": -1})  # 422
                call("GET", "/items/999999", key)  # 404
            call("GET", "/reports/slow", keys[round_no % len(keys)], params={"delay_ms": 250})
            call("GET", "/debug/boom", keys[0])  # 500
            call("GET", "/items")  # 401, no consumer
            call("POST", "/auth/login", json={"username": "alice", "password": "wonderland-42"})
    return sent
