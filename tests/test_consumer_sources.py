"""consumer/sources.py, identification without code: JWT claims, Basic auth, headers; and
callbacks named in SPANLYTICS_CONSUMER_FROM (capture/options.py loads them)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

import spanlytics
from spanlytics.capture.options import CaptureOptions, load_callback
from spanlytics.config import Settings
from spanlytics.consumer.sources import ConsumerSources, basic_auth_user, hash_identifier, jwt_claim
from spanlytics.consumer.value import Consumer
from spanlytics.destinations.local import iter_records
from spanlytics.record import RequestRecord
from tests.conftest import db_bytes

CALLBACK_MODULE = "spanlytics_test_identify"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


JWT_HEADER = _b64url(b'{"alg":"HS256","typ":"JWT"}')


def _jwt(payload: object, *, raw: bytes | None = None) -> str:
    """A JWT-shaped token: header.payload.signature, base64url without padding."""
    body = raw if raw is not None else json.dumps(payload).encode("utf-8")
    return f"{JWT_HEADER}.{_b64url(body)}.c2lnbmF0dXJl"


def _bearer_payload(payload: bytes) -> str:
    return f"Bearer a.{_b64url(payload)}.c"


def _basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode("ascii")


# --- jwt_claim -------------------------------------------------------------------------


def test_jwt_claim_reads_string_and_integer_claims() -> None:
    token = _jwt({"sub": "user-42", "uid": 1234, "name": "Ann"})
    assert jwt_claim(f"Bearer {token}", "sub") == "user-42"
    assert jwt_claim(f"Bearer {token}", "uid") == "1234"
    assert jwt_claim(f"bearer {token}", "name") == "Ann"  # the scheme is case-insensitive
    assert jwt_claim(f"  BEARER {token}  ", "sub") == "user-42"
    assert jwt_claim(f"Bearer {token}", "missing") is None


def test_jwt_claim_follows_dotted_paths_into_nested_objects() -> None:
    token = _jwt({"org": {"id": "acme", "plan": {"tier": 3}}, "sub": "u1", "roles": ["a"]})
    assert jwt_claim(f"Bearer {token}", "org.id") == "acme"
    assert jwt_claim(f"Bearer {token}", "org.plan.tier") == "3"
    assert jwt_claim(f"Bearer {token}", "org.plan") is None  # an object is not an identifier
    assert jwt_claim(f"Bearer {token}", "sub.x") is None  # through a string
    assert jwt_claim(f"Bearer {token}", "org.missing.id") is None
    assert jwt_claim(f"Bearer {token}", "roles") is None


@pytest.mark.parametrize("value", [True, False, None, 1.5, ["u1"], {"id": "u1"}])
def test_jwt_claim_rejects_values_that_are_not_identifiers(value: object) -> None:
    assert jwt_claim(f"Bearer {_jwt({'sub': value})}", "sub") is None


@pytest.mark.parametrize("length", range(4))
def test_jwt_claim_decodes_every_unpadded_length(length: int) -> None:
    # base64url without "=": the payload length mod 4 is 0, 2 or 3 depending on the claim.
    sub = "u" * (10 + length)
    token = _jwt({"sub": sub})
    assert jwt_claim(f"Bearer {token}", "sub") == sub
    header, payload, signature = token.split(".")
    padded = payload + "=" * (-len(payload) % 4)
    assert jwt_claim(f"Bearer {header}.{padded}.{signature}", "sub") == sub


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer abc",
        "Bearer a.b",
        "Bearer a.b.c.d",
        "Bearer a.!!!.c",
        "Bearer a.abcde.c",  # 5 base64 characters can never be valid
        _bearer_payload(b"not json"),
        _bearer_payload(b"[1, 2]"),
        _bearer_payload(b'"sub"'),
        _bearer_payload(b'{"sub": "\xff"}'),  # not UTF-8
        _bearer_payload(b'{"sub": "u1"'),  # truncated
    ],
)
def test_jwt_claim_returns_none_for_malformed_tokens(authorization: str | None) -> None:
    assert jwt_claim(authorization, "sub") is None


def test_jwt_claim_survives_a_deeply_nested_payload() -> None:
    # The header is attacker-controlled: it must not raise (RecursionError is no ValueError).
    token = _jwt(None, raw=b"[" * 3000)
    assert jwt_claim(f"Bearer {token}", "sub") is None


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Digest", "DPoP", "Bearer:"])
def test_jwt_claim_ignores_other_schemes(scheme: str) -> None:
    assert jwt_claim(f"{scheme} {_jwt({'sub': 'u1'})}", "sub") is None


def test_jwt_claim_needs_the_scheme() -> None:
    assert jwt_claim(_jwt({"sub": "u1"}), "sub") is None


# --- basic_auth_user -------------------------------------------------------------------


def test_basic_auth_user_reads_the_user_only() -> None:
    assert basic_auth_user(_basic(b"alice:s3cret")) == "alice"
    assert basic_auth_user(_basic(b"alice:pa:ss:word")) == "alice"
    assert basic_auth_user(_basic(b"alice:")) == "alice"
    assert basic_auth_user(" basic " + base64.b64encode(b"bob:pw").decode() + " ") == "bob"
    assert basic_auth_user(_basic("j\u00f6rg:pw".encode())) == "j\u00f6rg"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Basic",
        "Basic !!!",
        "Basic YWxpY2U6cHc",  # missing padding: invalid strict base64
        _basic(b":s3cret"),  # empty user
        _basic(b"\xff\xfe:pw"),  # not UTF-8
        "Bearer " + base64.b64encode(b"alice:pw").decode(),
        "Digest username=alice",
    ],
)
def test_basic_auth_user_rejects_malformed_credentials(authorization: str | None) -> None:
    assert basic_auth_user(authorization) is None


def test_basic_auth_without_a_colon_is_not_a_user_name() -> None:
    # RFC 7617 credentials are "user:password"; a colon-less value is often a bare API key,
    # which must not become a plain-text consumer identifier.
    assert basic_auth_user(_basic(b"sk_live_51HqTyKey")) is None


# --- hash_identifier -------------------------------------------------------------------


def test_hash_identifier_is_a_stable_short_pseudonym() -> None:
    first = hash_identifier("ann@example.com")
    assert first == hash_identifier("ann@example.com")
    assert len(first) == 32 and all(c in "0123456789abcdef" for c in first)
    assert first == hashlib.sha256(b"ann@example.com").hexdigest()[:32]
    assert first != hash_identifier("ann@example.org")
    assert first != hash_identifier("Ann@example.com")
    assert len(hash_identifier("\u00e9" * 1000)) == 32


# --- ConsumerSources -------------------------------------------------------------------


def test_parse_keeps_the_configured_order() -> None:
    sources = ConsumerSources.parse(
        ("jwt-claim:org.id", "header:X-Client", "basic-auth-user", "baggage"), None, False
    )
    assert sources.sources == (
        ("jwt-claim", "org.id"),
        ("header", "x-client"),
        ("basic-auth-user", ""),
        ("baggage", ""),
    )
    assert sources.hash_ids is False
    assert ConsumerSources.parse(("BASIC-AUTH-USER", " Header: X-Key "), None, True) == ConsumerSources(
        (("basic-auth-user", ""), ("header", "x-key")), True
    )


def test_parse_puts_the_consumer_header_first() -> None:
    sources = ConsumerSources.parse(("jwt-claim:sub",), "X-Consumer-Id", False)
    assert sources.sources == (("header", "x-consumer-id"), ("jwt-claim", "sub"))
    with_defaults = ConsumerSources.parse((), "X-Consumer-Id", False)
    assert with_defaults.sources == (("header", "x-consumer-id"), ("baggage", ""))


def test_parse_defaults_to_baggage_and_deduplicates() -> None:
    assert ConsumerSources.parse((), None, False).sources == (("baggage", ""),)
    assert ConsumerSources.parse((), None, False) == ConsumerSources()
    sources = ConsumerSources.parse(
        ("header:X-Client", "header:x-client", "baggage", "baggage"), "X-CLIENT", False
    )
    assert sources.sources == (("header", "x-client"), ("baggage", ""))


@pytest.mark.parametrize(
    "spec", ["query-param:api_key", "header:", "jwt-claim:", "basic-auth-user:alice", "query"]
)
def test_parse_warns_about_unknown_entries_and_skips_them(
    spec: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "spanlytics"):
        sources = ConsumerSources.parse((spec, "header:X-Client"), None, False)
    assert sources.sources == (("header", "x-client"),)
    assert "unknown SPANLYTICS_CONSUMER_FROM entry" in caplog.text
    assert repr(spec) in caplog.text


def test_parse_leaves_callback_entries_to_load_callback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "spanlytics"):
        sources = ConsumerSources.parse(("myapp.auth:identify", "header:X-Client"), None, False)
    assert sources.sources == (("header", "x-client"),)
    assert caplog.text == ""


def _lookup(headers: dict[str, str]) -> Any:
    def header(name: str) -> str | None:
        assert name == name.lower()  # captured header names are lower-case
        return headers.get(name)

    return header


def test_resolve_takes_the_first_source_with_a_value() -> None:
    sources = ConsumerSources.parse(
        ("header:X-Client", "jwt-claim:sub", "basic-auth-user", "baggage"), None, False
    )
    bearer = {"authorization": f"Bearer {_jwt({'sub': 'jwt-user'})}"}
    assert sources.resolve(_lookup({"x-client": " client-7 ", **bearer}), "bag") == Consumer("client-7")
    assert sources.resolve(_lookup({"x-client": "   ", **bearer}), "bag") == Consumer("jwt-user")
    assert sources.resolve(_lookup({"authorization": _basic(b"alice:pw")}), "bag") == Consumer("alice")
    assert sources.resolve(_lookup({}), "from-baggage") == Consumer("from-baggage")
    assert sources.resolve(_lookup({}), None) is None
    assert sources.resolve(_lookup({}), "") is None


def test_resolve_hashes_identifiers_when_asked() -> None:
    hashed = ConsumerSources.parse(("header:X-Client",), None, True)
    assert hashed.resolve(_lookup({"x-client": " client-7 "}), None) == Consumer(hash_identifier("client-7"))
    long_id = "k" * 500  # too long to be an identifier, but its pseudonym is fine
    assert hashed.resolve(_lookup({"x-client": long_id}), None) == Consumer(hash_identifier(long_id))
    plain = ConsumerSources.parse(("header:X-Client",), None, False)
    assert plain.resolve(_lookup({"x-client": long_id}), None) is None


# --- load_callback ---------------------------------------------------------------------


@pytest.fixture
def callback_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / f"{CALLBACK_MODULE}.py").write_text(
        "def identify(view):\n"
        "    return view.headers.get('x-tenant')\n"
        "\n"
        "class Identify:\n"
        "    @staticmethod\n"
        "    def by_client(view):\n"
        "        return {'id': view.headers.get('x-client'), 'group': 'from-callback'}\n"
        "\n"
        "NOT_CALLABLE = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, CALLBACK_MODULE, raising=False)
    yield CALLBACK_MODULE
    sys.modules.pop(CALLBACK_MODULE, None)


def test_load_callback_imports_module_function(callback_module: str) -> None:
    loaded = load_callback(("header:X-Client", "jwt-claim:sub", "baggage", f"{callback_module}:identify"))
    assert loaded is not None
    assert loaded is sys.modules[callback_module].identify
    nested = load_callback((f" {callback_module}:Identify.by_client ",))
    assert nested is sys.modules[callback_module].Identify.by_client
    assert load_callback(("header:X-Client", "basic-auth-user")) is None
    assert load_callback(()) is None


def test_load_callback_skips_a_non_callable_with_a_warning(
    callback_module: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "spanlytics"):
        assert load_callback((f"{callback_module}:NOT_CALLABLE",)) is None
    assert "not callable" in caplog.text
    loaded = load_callback((f"{callback_module}:NOT_CALLABLE", f"{callback_module}:identify"))
    assert loaded is sys.modules[callback_module].identify


@pytest.mark.parametrize("spec", ["spanlytics_no_such_module:identify", f"{CALLBACK_MODULE}:missing"])
def test_load_callback_failure_warns_and_returns_none(
    spec: str, callback_module: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "spanlytics"):
        assert load_callback((spec,)) is None
    assert f"cannot load consumer callback {spec}" in caplog.text


def test_settings_prefer_the_code_callback(callback_module: str) -> None:
    def in_code(view: Any) -> str:
        return "code"

    def callback(settings: Settings) -> object:
        return CaptureOptions.from_settings(settings).identify_consumer

    from_env = Settings.resolve(env={"SPANLYTICS_CONSUMER_FROM": f"{callback_module}:identify"})
    assert callback(from_env) is sys.modules[callback_module].identify
    both = Settings.resolve(
        env={"SPANLYTICS_CONSUMER_FROM": f"{callback_module}:identify"}, identify_consumer=in_code
    )
    assert callback(both) is in_code
    assert callback(Settings.resolve(env={})) is None


# --- end to end ------------------------------------------------------------------------

SUB = "user-4f1c9a77"
PASSWORD = "pw-9e8d7c6b5a"


def _run(tmp_path: Path, headers: dict[str, str], **settings: Any) -> tuple[RequestRecord, bytes]:
    """One request through a fresh provider configured with ``settings``; its record and db."""
    provider = TracerProvider()
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "consumers.db"
    processor = spanlytics.configure(tracer_provider=provider, local_path=str(db), **settings)
    assert processor is not None
    app = FastAPI()

    @app.get("/whoami")
    def whoami(request: Request) -> dict[str, bool]:
        if "x-set-consumer" in request.headers:
            spanlytics.set_consumer(request.headers["x-set-consumer"])
        return {"ok": True}

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    spanlytics.instrument_app(app)
    assert TestClient(app).get("/whoami", headers=headers).json() == {"ok": True}
    assert processor.force_flush()
    assert processor.exporter is not None
    assert processor.exporter.stats()["records_exported"] == 1
    (record,) = list(iter_records(db))
    provider.shutdown()
    return record, db_bytes(db)


@pytest.mark.parametrize("hashed", [False, True])
def test_jwt_claim_identifies_the_consumer_and_the_token_is_never_stored(
    tmp_path: Path, hashed: bool
) -> None:
    token = _jwt({"sub": SUB, "scope": "orders:read"})
    record, stored = _run(
        tmp_path, {"Authorization": f"Bearer {token}"}, consumer_from=("jwt-claim:sub",), consumer_hash=hashed
    )
    assert record.consumer == Consumer(hash_identifier(SUB) if hashed else SUB)
    for part in (token, *token.split(".")):
        assert part.encode() not in stored
    assert (SUB.encode() in stored) is not hashed


@pytest.mark.parametrize("hashed", [False, True])
def test_basic_auth_user_identifies_the_consumer_and_the_password_is_never_stored(
    tmp_path: Path, hashed: bool
) -> None:
    authorization = _basic(f"alice-7b3e:{PASSWORD}".encode())
    record, stored = _run(
        tmp_path, {"Authorization": authorization}, consumer_from=("basic-auth-user",), consumer_hash=hashed
    )
    assert record.consumer == Consumer(hash_identifier("alice-7b3e") if hashed else "alice-7b3e")
    assert PASSWORD.encode() not in stored
    assert authorization.split()[1].encode() not in stored
    assert (b"alice-7b3e" in stored) is not hashed


@pytest.mark.parametrize("hashed", [False, True])
def test_header_identifies_the_consumer(tmp_path: Path, hashed: bool) -> None:
    record, _ = _run(
        tmp_path, {"X-Client": "client-7"}, consumer_from=("header:X-Client",), consumer_hash=hashed
    )
    assert record.consumer == Consumer(hash_identifier("client-7") if hashed else "client-7")


def test_hashed_header_identifier_is_not_stored_in_the_clear(tmp_path: Path) -> None:
    # With hashing on, the raw identifier (here an e-mail) must not sit next to its
    # pseudonym in the request headers of the same record.
    record, stored = _run(
        tmp_path,
        {"X-User-Email": "ann.b7c1@example.com"},
        consumer_from=("header:X-User-Email",),
        consumer_hash=True,
    )
    assert record.consumer == Consumer(hash_identifier("ann.b7c1@example.com"))
    assert b"ann.b7c1@example.com" not in stored


def test_sources_follow_the_configured_order_and_set_consumer_wins(tmp_path: Path) -> None:
    bearer = {"Authorization": f"Bearer {_jwt({'sub': SUB})}"}
    order = {"consumer_from": ("header:X-Client", "jwt-claim:sub")}
    record, _ = _run(tmp_path / "a", {"X-Client": "client-7", **bearer}, **order)
    assert record.consumer == Consumer("client-7")
    record, _ = _run(tmp_path / "b", bearer, **order)
    assert record.consumer == Consumer(SUB)
    record, _ = _run(tmp_path / "c", {"X-Set-Consumer": "in-code", "X-Client": "client-7"}, **order)
    assert record.consumer == Consumer("in-code")


def test_consumer_header_setting_comes_first(tmp_path: Path) -> None:
    record, _ = _run(
        tmp_path,
        {"X-Consumer-Id": "gateway-id", "X-Client": "client-7"},
        consumer_header="X-Consumer-Id",
        consumer_from=("header:X-Client",),
    )
    assert record.consumer == Consumer("gateway-id")


def test_callback_from_the_environment_identifies_the_consumer(
    tmp_path: Path, callback_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPANLYTICS_CONSUMER_FROM", f"{callback_module}:Identify.by_client,header:X-Tenant")
    record, _ = _run(tmp_path / "a", {"X-Client": "client-7", "X-Tenant": "tenant-1"})
    assert record.consumer == Consumer("client-7", group="from-callback")  # the callback beats headers
    record, _ = _run(tmp_path / "b", {"X-Tenant": "tenant-1"})
    assert record.consumer == Consumer("tenant-1")  # the callback found nothing


def test_hostile_jwt_does_not_cost_the_request_its_record(tmp_path: Path) -> None:
    token = _jwt(None, raw=b"[" * 3000)
    record, _ = _run(tmp_path, {"Authorization": f"Bearer {token}"}, consumer_from=("jwt-claim:sub",))
    assert record.path == "/whoami"
    assert record.consumer is None
