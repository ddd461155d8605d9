"""Property-based, end to end: secrets sent to a real uvicorn server never reach the SQLite
file, while non-sensitive fields survive unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanlytics.destinations.local import iter_records
from tests.conftest import db_bytes
from tests.support.servers import free_port, start_server, uvicorn_argv

FIELD_NAMES = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "auth",
    "api_key",
    "apikey",
    "api-key",
    "credential",
    "private_key",
    "privateKey",
    "card_number",
    "cardNumber",
    "cvv",
    "cvc",
    "ccv",
    "ssn",
    "session",
    "cookie",
    "accessToken",
    "client_secret",
    "userPassword",
    "X-Api-Key",
]
HEADER_NAMES = ["Authorization", "X-Api-Key", "X-Auth-Token", "X-Session-Id", "X-CSRF-Token", "Cookie"]
SENSITIVE = re.compile(
    r"password|passwd|pwd|secret|token|auth|api[-_ ]?key|credential|private[-_ ]?key|"
    r"card[-_ ]?number|cvv|cvc|ccv|ssn|session|cookie|csrf|xsrf",
    re.IGNORECASE,
)

secrets_ = st.builds(lambda h: f"S3CR3T{h}", st.text("0123456789abcdef", min_size=12, max_size=12))
plain_keys = st.from_regex(r"[a-z]{3,8}", fullmatch=True).filter(lambda k: not SENSITIVE.search(k))
plain_values = st.builds(lambda h: f"keep{h}", st.text("0123456789abcdef", min_size=8, max_size=8))


def any_case(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(name, flips, strict=True))
    )


sensitive_field = st.sampled_from(FIELD_NAMES).flatmap(any_case)


@st.composite
def nested_payload(draw: st.DrawFn) -> tuple[Any, str, list[str]]:
    """A JSON document with one secret at a random depth and some plain fields around it."""
    secret = draw(secrets_)
    value: Any = {draw(sensitive_field): secret}
    kept: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        key, plain = draw(plain_keys), draw(plain_values)
        kept.append(plain)
        value = [value, plain] if draw(st.booleans()) else {key + "x": value, key + "y": plain}
    if not isinstance(value, dict):
        value = {"data": value}
    return value, secret, kept


def test_secrets_never_reach_the_store(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    port = free_port()
    server = start_server(
        uvicorn_argv("tests.support.edge_apps:fastapi_app", port),
        port=port,
        log_dir=tmp_path,
        env={"SPANLYTICS_LOCAL_PATH": str(db)},
    )
    sent_secrets: list[str] = []
    kept_values: list[str] = []
    http = requests.Session()
    try:

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            payload=nested_payload(),
            header=st.sampled_from(HEADER_NAMES).flatmap(any_case),
            query=sensitive_field,
            form_field=sensitive_field,
            secrets=st.lists(secrets_, min_size=3, max_size=3),
            plain=plain_values,
        )
        def exchange(
            payload: tuple[Any, str, list[str]],
            header: str,
            query: str,
            form_field: str,
            secrets: list[str],
            plain: str,
        ) -> None:
            document, secret, kept = payload
            header_secret, query_secret, form_secret = secrets
            sent_secrets.extend([secret, *secrets])
            kept_values.extend([*kept, plain])
            url = f"{server.base_url}/echo?{urlencode({query: query_secret, 'page': plain})}"
            response = http.post(url, json=document, headers={header: f"Bearer {header_secret}"}, timeout=10)
            assert response.json() == document  # the app is unaffected
            form = urlencode({form_field: form_secret, "name": plain})
            response = http.post(
                url, data=form, headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10
            )
            assert response.text == form

        exchange()
    finally:
        server.stop()

    stored = db_bytes(db)
    assert stored, "nothing was stored"
    leaked = [s for s in sent_secrets if s.encode() in stored]
    assert not leaked, f"{len(leaked)} secrets reached the store"
    assert server.log() and not any(s in server.log() for s in sent_secrets)
    records = [r for r in iter_records(db) if r.path == "/echo"]
    assert len(records) == 2 * len(sent_secrets) // 4
    text = json.dumps([[r.url, r.request_body, r.response_body] for r in records])
    missing = [v for v in kept_values if v not in text]
    assert not missing, f"non-sensitive values lost: {missing[:5]}"
