"""Issue 12, classes 1-9 over real sockets: a real uvicorn (FastAPI) or gunicorn (Flask) server
with the local store and the ReadMe destination (pointed at the loopback ingestion stub)
receives secrets in every position the issue lists; none may reach the SQLite file, the
ReadMe payloads or the server log."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from spanlytics.consumer import hash_identifier
from spanlytics.destinations.local import iter_records
from tests.conftest import db_bytes
from tests.support.ingest_stub import IngestStub
from tests.support.secret_apps import DB_PASSWORD, OAUTH_CODE
from tests.support.servers import free_port, gunicorn_argv, poll_until, start_server, uvicorn_argv

SERVERS: dict[str, Callable[[int], list[str]]] = {
    "fastapi": lambda port: uvicorn_argv("tests.support.secret_apps:fastapi_app", port),
    "flask": lambda port: gunicorn_argv("tests.support.secret_apps:flask_app", port, "--workers", "1"),
}
API_KEY = "consumer-key-S3CR3T-0001"


def secret(n: int) -> str:
    return f"S3CR3T{n:04d}q8w7e6r5"


def jwt(n: int) -> str:
    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'sub': f'user-{n}'})}.c2lnbmF0dXJlLXtufQ"


@dataclass
class Call:
    leak_class: str
    method: str
    path: str
    secrets: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}
CALLS = [
    # 1. JSON that the parser and the text disagree on
    Call(
        "1", "POST", "/echo", [secret(1)], JSON, f'{{"password": "{secret(1)}", "password": null}}'.encode()
    ),
    Call("1", "POST", "/echo", [secret(2)], JSON, f"{{'password': '{secret(2)}', 'n': 1}}".encode()),
    Call("1", "POST", "/echo", [secret(3)], JSON, f'{{password: "{secret(3)}", n: 1}}'.encode()),
    Call(
        "1", "POST", "/echo", [secret(4)], JSON, f'\ufeff{{"credentials": {{"key": "{secret(4)}"}}}}'.encode()
    ),
    Call(
        "1",
        "POST",
        "/echo",
        [secret(5)],
        JSON,
        f')]}}\',\n{{"credentials": {{"key": "{secret(5)}"}}}}'.encode(),
    ),
    # 2. secrets inside values, and credentials under innocent names
    Call("2", "POST", "/echo", [secret(10)], JSON, json.dumps({"q": f"password={secret(10)}&x=1"}).encode()),
    Call("2", "POST", "/echo", [secret(11)], JSON, json.dumps({"note": f"Bearer {secret(11)}"}).encode()),
    Call(
        "2",
        "POST",
        "/echo",
        [secret(12)],
        JSON,
        json.dumps({"query": f'mutation {{ login(user: "ann", password: "{secret(12)}") }}'}).encode(),
    ),
    Call("2", "POST", f"/echo?q={jwt(13)}", [jwt(13), jwt(14)], {"X-Trace": jwt(14)} | TEXT, b"x"),
    Call("2", "POST", f"/echo?q=Bearer+{secret(15)}", [secret(15)], TEXT, b"x"),
    Call("2", "GET", f"/reset/{secret(16)}", [secret(16)]),  # a route parameter named token
    # 3. free text and exceptions
    Call("3", "POST", "/echo", [secret(20)], TEXT, f"Authorization: Token {secret(20)}\n".encode()),
    Call("3", "POST", "/echo", [secret(21)], TEXT, f"password=abc,{secret(21)} rest".encode()),
    Call(
        "3",
        "POST",
        "/echo",
        [secret(22)],
        {"Content-Type": "text/yaml"},
        f"password: |\n  {secret(22)}\n".encode(),
    ),
    Call(
        "3",
        "POST",
        "/echo",
        [secret(23)],
        {"Content-Type": "application/xml"},
        f'<params><param name="password">{secret(23)}</param></params>'.encode(),
    ),
    Call("3", "GET", "/raise", [DB_PASSWORD]),
    # 4. echoes
    Call(
        "4",
        "POST",
        "/login",
        [secret(30)],
        JSON,
        json.dumps({"user": "ann", "password": secret(30)}).encode(),
    ),
    # 5. fields that are not headers (and the consumer: X-Api-Key on every call)
    Call("5", "POST", "/echo", [secret(40)], {"User-Agent": f"probe/1.0 token={secret(40)}"} | TEXT, b"x"),
    # 6. parsing as the frameworks do
    Call("6", "POST", f"/echo?password=abc;{secret(50)}", [secret(50)], TEXT, b"x"),
    Call(
        "6",
        "POST",
        "/echo",
        [secret(51)],
        {"Content-Type": "application/x-www-form-urlencoded"},
        f"user=ann&password=abc;{secret(51)}".encode(),
    ),
    # 7. charsets
    Call(
        "7",
        "POST",
        "/echo",
        [secret(60)],
        {"Content-Type": "text/plain; charset=utf-16"},
        f"password={secret(60)}".encode("utf-16"),
    ),
    Call(
        "7",
        "POST",
        "/echo",
        [secret(61)],
        {"Content-Type": "application/json; charset=latin-1"},
        f'{{"password": "{secret(61)}", "name": "Jörg"}}'.encode("latin-1"),
    ),
    # 8. default rules
    Call(
        "8",
        "POST",
        f"/echo?iban={secret(70)}&pin={secret(71)}&X-Amz-Signature={secret(72)}&api.key={secret(73)}",
        [secret(70), secret(71), secret(72), secret(73), secret(74)],
        {"Cf-Access-Jwt-Assertion": secret(74)} | TEXT,
        b"x",
    ),
    Call("8", "GET", "/redirect", [OAUTH_CODE]),
    Call(
        "8",
        "POST",
        "/echo?account=DE89370400440532013000",
        ["370400440532013000", "4111111111111111"],
        JSON,
        b'{"payment": {"cc": "4111111111111111", "exp": "12/29"}}',
    ),
    # 9. ReadMe: an undecodable body
    Call("9", "POST", "/echo", [], TEXT, b"caf\xe9 ok"),
]


@pytest.mark.parametrize("framework", sorted(SERVERS))
def test_no_secret_reaches_the_store_readme_or_the_log(framework: str, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    stub = IngestStub()
    port = free_port()
    env = {
        "SPANLYTICS_DESTINATIONS": "local,readme",
        "SPANLYTICS_LOCAL_PATH": str(db),
        "SPANLYTICS_README_API_KEY": "readme-key",
        "SPANLYTICS_README_BASE_URL": stub.url,
        "SPANLYTICS_FLUSH_INTERVAL": "0.2",
        "SPANLYTICS_CONSUMER_FROM": "header:X-Api-Key",
    }
    server = start_server(SERVERS[framework](port), port=port, log_dir=tmp_path, env=env)
    try:
        for call in CALLS:
            headers = {"X-Api-Key": API_KEY, **call.headers}
            url = server.base_url + call.path
            # one connection per call: a server may close it after a 500
            requests.request(
                call.method, url, headers=headers, data=call.body, allow_redirects=False, timeout=10
            )
        poll_until(
            lambda: sum(len(json.loads(r.body)) for r in stub.requests()) >= len(CALLS), 30, "ReadMe logs"
        )
    finally:
        server.stop()
        stub.close()

    stored = db_bytes(db)
    sent = b"".join(r.body for r in stub.requests())
    log = server.log().encode()
    # (the server's own error log prints the app's exception: it is not ours)
    ours_in_log = log.replace(DB_PASSWORD.encode(), b"")
    checks = [(call.leak_class, value) for call in CALLS for value in call.secrets]
    checks.append(("5 (consumer id from X-Api-Key)", API_KEY))
    leaks = []
    for leak_class, value in checks:
        forms = (value.encode(), value.encode("utf-16-le"))
        places = [
            name
            for name, data in (("store", stored), ("readme", sent), ("log", ours_in_log))
            if any(f in data for f in forms)
        ]
        if places:
            leaks.append(f"class {leak_class}: {value} in {', '.join(places)}")
    assert not leaks, "\n".join(leaks)

    records = {(r.method, r.path, r.request_body): r for r in iter_records(db)}
    assert len([r for r in iter_records(db) if r.path != "/healthz"]) == len(CALLS)
    # what is kept stays readable
    latin = next(r for r in iter_records(db) if r.request_content_type == "application/json; charset=latin-1")
    assert json.loads(latin.request_body or "") == {"password": "[masked]", "name": "Jörg"}
    assert {r.consumer.identifier for r in records.values() if r.consumer} == {hash_identifier(API_KEY)}
    raised = next(r for r in iter_records(db) if r.path == "/raise")
    assert raised.exception is not None and raised.exception.message == "bad password [masked]"
    redirect = next(r for r in iter_records(db) if r.path == "/redirect")
    assert dict(redirect.response_headers)["location"].endswith("code=%5Bmasked%5D&state=xyz")
    # 9: ReadMe gets its SDK's placeholder for the body that is not valid UTF-8
    entries = [log["request"]["log"]["entries"][0] for r in stub.requests() for log in json.loads(r.body)]
    undecodable = [e for e in entries if e["request"].get("postData", {}).get("text") == "[NOT VALID UTF-8]"]
    assert len(undecodable) == 1
    assert undecodable[0]["response"]["content"]["text"] == "[NOT VALID UTF-8]"
