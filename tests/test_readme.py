"""destinations/readme.py: the encoder, and a contract suite against a loopback Metrics API."""

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

import spanlytics
from spanlytics.consumer import Consumer
from spanlytics.destinations.local import iter_records
from spanlytics.destinations.readme import ReadmeEncoder, ReadmeOptions, readme_hash
from spanlytics.record import RequestRecord
from tests.support.ingest_stub import IngestStub
from tests.support.servers import free_port, gunicorn_argv, poll_until, start_server, uvicorn_argv

API_KEY = "rdme_xn8s9h0ad9b0f4ecf3e1f1e2c6d5e9a0b"
SCHEMA = Path(__file__).parent / "har" / "har-1.2.schema.json"
STARTED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_hash_is_byte_compatible_with_readme_sdks() -> None:
    assert readme_hash("Bearer: a-random-api-key") == (
        "sha512-7S+L0vUE8Fn6HI3836rtz4b6fVf6H4JFur6SGkOnL3bFpC856+OSZkpIHphZ0ipNO+kUw1ePb5df2iYrNQCpXw==?-key"
    )


def record(**overrides: Any) -> RequestRecord:
    values: dict[str, Any] = {
        "record_id": str(uuid.uuid4()),
        "trace_id": "t",
        "span_id": "s",
        "start_time_ns": 1_700_000_000_123_456_789,
        "duration_ms": 12.6,
        "method": "GET",
        "route": "/",
        "path": "/",
        "url": "http://api.test/",
        "query": "",
        "status": 201,
        "host": "api.test",
        "client_ip": "10.0.0.1",
        "consumer": Consumer("key-1", "Team", None, "t@x.io"),
        "request_headers": (("host", "api.test"),),
        "response_headers": (("content-type", "application/json"),),
        "response_content_type": "application/json",
        "response_body": '{"a":1}',
        "response_size": 7,
    }
    values.update(overrides)
    return RequestRecord(**values)


def test_entry_shape_and_rules() -> None:
    encoder = ReadmeEncoder()
    log = encoder.entry(record())
    assert log is not None
    assert log["group"] == {"id": readme_hash("key-1"), "label": "Team", "email": "t@x.io"}
    entry = log["request"]["log"]["entries"][0]
    assert entry["startedDateTime"] == "2023-11-14T22:13:20.123Z"
    assert entry["time"] == 13
    assert entry["response"]["statusText"] == "Created"
    assert entry["response"]["content"] == {"text": '{"a":1}', "size": 7, "mimeType": "application/json"}
    assert "postData" not in entry["request"]
    assert encoder.entry(record(method="OPTIONS")) is None  # never logged, as ReadMe's SDKs
    assert encoder.entry(record(consumer=None)) is None  # no group: skipped...
    anonymous = ReadmeEncoder(ReadmeOptions(log_anonymous="anonymous")).entry(record(consumer=None))
    assert anonymous is not None and anonymous["group"] == {
        "id": readme_hash("anonymous"),
        "label": "anonymous",
    }
    hosts = ReadmeEncoder(ReadmeOptions(allowed_hosts=("api.test",)))
    assert hosts.entry(record()) is not None and hosts.entry(record(host="other.test")) is None


def test_forwarded_headers_only_when_trusted() -> None:
    forwarded = (
        ("host", "internal:8000"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.example.com"),
    )
    rec = record(host="internal:8000", request_headers=forwarded, path="/v1/x", query="a=1")
    plain = ReadmeEncoder().entry(rec)
    trusted = ReadmeEncoder(trust_forwarded=True).entry(rec)
    assert plain is not None and trusted is not None
    assert plain["request"]["log"]["entries"][0]["request"]["url"] == "http://internal:8000/v1/x?a=1"
    assert trusted["request"]["log"]["entries"][0]["request"]["url"] == "https://api.example.com/v1/x?a=1"


def test_batches_respect_record_and_byte_limits() -> None:
    records = [record() for _ in range(25)]
    batches = list(ReadmeEncoder().encode(records, max_records=10, max_bytes=1 << 20))
    assert [b.records for b in batches] == [10, 10, 5]
    assert all(b.path == "/v1/request" for b in batches)
    ids = [item["_id"] for b in batches for item in json.loads(b.body)]
    assert ids == [r.record_id for r in records]


def readme_env(stub: IngestStub, tmp_path: Path) -> dict[str, str]:
    """Settings that point the ReadMe destination at the loopback stub."""
    return {
        "SPANLYTICS_DESTINATIONS": "readme",
        "SPANLYTICS_README_API_KEY": API_KEY,
        "SPANLYTICS_README_BASE_URL": stub.url,
        "SPANLYTICS_FLUSH_INTERVAL": "0.2",
        "SPANLYTICS_SPOOL_DIR": str(tmp_path / "spool"),
    }


SERVERS = {
    "fastapi-uvicorn": lambda port: uvicorn_argv("tests.support.readme_contract_apps:fastapi_app", port),
    "flask-gunicorn": lambda port: gunicorn_argv("tests.support.readme_contract_apps:flask_app", port),
}
FORM = "a=1&b=two%20words&password=hunter2"
CALLS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("GET", "/", {}, b""),
    ("GET", "/?arr%5B1%5D=3&val=1", {}, b""),
    ("POST", "/", {"Content-Type": "application/json"}, b'{"user": {"email": "dom@readme.io"}}'),
    ("POST", "/", {"Content-Type": "application/vnd.api+json"}, b'{"data": {"type": "owl", "id": "1"}}'),
    ("POST", "/", {"Content-Type": "text/plain"}, b"Hello world"),
    ("POST", "/", {}, b"no content type"),
    ("POST", "/", {"Content-Type": "application/x-www-form-urlencoded"}, FORM.encode()),
    ("GET", "/", {"Authorization": "Bearer: a-random-api-key"}, b""),
]


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_contract_with_a_loopback_metrics_api(server: str, tmp_path: Path) -> None:
    stub = IngestStub()
    port = free_port()
    app = start_server(SERVERS[server](port), port=port, log_dir=tmp_path, env=readme_env(stub, tmp_path))
    try:
        for method, path, headers, body in CALLS:
            if not body:  # requests adds no Content-Type itself for raw bytes
                assert requests.request(method, app.base_url + path, headers=headers, timeout=5).ok
            else:
                assert requests.request(method, app.base_url + path, headers=headers, data=body, timeout=5).ok
        poll_until(lambda: sum(len(json.loads(r.body)) for r in stub.requests()) >= len(CALLS), 20, "logs")
    finally:
        app.stop()
        stub.close()
    posts = stub.requests()
    assert {r.path for r in posts} == {"/v1/request"}
    assert {r.headers["Authorization"] for r in posts} == {
        "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    }
    assert {r.headers["Content-Type"] for r in posts} == {"application/json"}
    logs = [log for r in posts for log in json.loads(r.body)]
    assert len(logs) == len(CALLS)
    schema = json.loads(SCHEMA.read_text())
    entries: list[dict[str, Any]] = []
    for log in logs:
        assert uuid.UUID(log["_id"]).version == 4
        assert log["group"] == {
            "id": readme_hash("owlbert-api-key"),
            "label": "Owlbert",
            "email": "owlbert@example.com",
        }
        assert log["clientIPAddress"] == "127.0.0.1" and log["development"] is False
        assert log["request"]["log"]["creator"]["name"] == "spanlytics"
        (entry,) = log["request"]["log"]["entries"]
        jsonschema.validate(entry, schema)
        assert STARTED.match(entry["startedDateTime"])
        request, response = entry["request"], entry["response"]
        assert request["httpVersion"] == "HTTP/1.1"
        assert request["url"].startswith(f"http://127.0.0.1:{port}/")
        assert response["status"] == 200 and response["statusText"] == "OK"
        assert response["content"]["size"] == len(response["content"]["text"])
        entries.append(entry)
    by_url = {
        e["request"]["url"].split(str(port), 1)[1]: e for e in entries if e["request"]["method"] == "GET"
    }
    query = by_url["/?arr%5B1%5D=3&val=1"]["request"]
    assert query["queryString"] == [{"name": "arr[1]", "value": "3"}, {"name": "val", "value": "1"}]
    assert json.loads(by_url["/"]["response"]["content"]["text"]) == {"message": "hello world"}
    posted = [e["request"]["postData"] for e in entries if e["request"]["method"] == "POST"]
    assert all(set(p) in ({"mimeType", "text"}, {"mimeType", "params"}) for p in posted)
    assert {"mimeType": "application/json", "text": '{"user": {"email": "dom@readme.io"}}'} in posted
    assert {"mimeType": "application/vnd.api+json", "text": '{"data": {"type": "owl", "id": "1"}}'} in posted
    assert {"mimeType": "text/plain", "text": "Hello world"} in posted
    assert {"mimeType": "text/plain", "text": "no content type"} in posted  # none given means text/plain
    assert {
        "mimeType": "application/x-www-form-urlencoded",
        "params": [
            {"name": "a", "value": "1"},
            {"name": "b", "value": "two words"},
            {"name": "password", "value": "[masked]"},
        ],
    } in posted
    auth_values = [
        h["value"] for e in entries for h in e["request"]["headers"] if h["name"].lower() == "authorization"
    ]
    assert auth_values == [readme_hash("Bearer: a-random-api-key")]  # hashed, once, as ReadMe's SDKs do


EXAMPLES = {
    "fastapi": lambda port: uvicorn_argv("examples.fastapi_service.main:app", port),
    "flask": lambda port: gunicorn_argv(
        "examples.flask_app:app", port, "--worker-class", "gthread", "--threads", "4"
    ),
}


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_examples_send_valid_har_for_every_identified_request(example: str, tmp_path: Path) -> None:
    from examples.demo_data import API_KEYS

    from tests.test_examples import drive

    stub = IngestStub()
    port = free_port()
    env = {**readme_env(stub, tmp_path), "SPANLYTICS_DESTINATIONS": "local,readme"}
    env["SPANLYTICS_LOCAL_PATH"] = str(tmp_path / "store.db")
    app = start_server(EXAMPLES[example](port), port=port, log_dir=tmp_path, env=env)
    try:
        sent = drive(app.base_url)
        identified = sum(n for (_, _, _, consumer), n in sent.items() if consumer)
        poll_until(lambda: sum(len(json.loads(r.body)) for r in stub.requests()) >= identified, 20, "logs")
    finally:
        app.stop()
        stub.close()
    logs = [log for r in stub.requests() for log in json.loads(r.body)]
    assert len(logs) == identified  # requests without a consumer (the 401s, the login) are skipped
    schema = json.loads(SCHEMA.read_text())
    groups = {info["id"]: info for info in API_KEYS.values()}
    expected_groups = {
        readme_hash(cid): (groups[cid]["name"], groups[cid]["email"])
        for (_, _, _, cid), n in sent.items()
        if cid
    }
    for log in logs:
        (entry,) = log["request"]["log"]["entries"]
        jsonschema.validate(entry, schema)
        group = log["group"]
        assert (group["label"], group["email"]) == expected_groups[group["id"]]
        assert entry["response"]["content"]["size"] == len(entry["response"]["content"]["text"].encode())
    sent_text = b"".join(r.body for r in stub.requests())
    assert b"sk_demo_" not in sent_text  # API keys appear only as ReadMe's hash


def test_readme_denylist_masks_what_every_destination_receives(tmp_path: Path) -> None:
    # ReadMe's option names, but general masking settings: fail closed, so a name the user
    # wants hidden reaches neither ReadMe nor the local store (nor any other destination).
    stub = IngestStub()
    provider = TracerProvider()
    try:
        processor = spanlytics.configure(
            tracer_provider=provider,
            destinations="local,readme",
            local_path=str(tmp_path / "s.db"),
            readme_api_key=API_KEY,
            readme_base_url=stub.url,
            readme_log_anonymous="anonymous",
            readme_denylist="account_ref",  # one name, as a string
            spool_dir=str(tmp_path / "spool"),
        )
        assert processor is not None
        app = FastAPI()

        @app.post("/transfers")
        async def transfer(request: Request) -> dict[str, object]:
            return {"ok": True, "echo": await request.json()}

        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
        client = TestClient(spanlytics.instrument_app(app))
        sent = {"account_ref": "ACC-77-SECRET", "amount": 12}
        assert client.post("/transfers?account_ref=ACC-77-SECRET", json=sent).status_code == 200
        assert processor.force_flush()
        [stored] = list(iter_records(tmp_path / "s.db"))
        [posted] = [entry for r in stub.requests() for entry in json.loads(r.body)]
    finally:
        provider.shutdown()
        stub.close()
    readme_text = json.dumps(posted)
    local_text = " ".join(str(v) for v in (stored.query, stored.request_body, stored.response_body))
    for text in (readme_text, local_text):
        assert "ACC-77-SECRET" not in text and "account_ref" in text
    assert json.loads(stored.request_body or "") == {"account_ref": "[masked]", "amount": 12}
