"""Issue 12, classes 1-9: secrets that reached destinations, one section per class. Each
case failed on the masking before the fix; the end-to-end versions over real sockets are in
tests/test_masking_leaks_end_to_end.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from spanlytics.config import Settings
from spanlytics.consumer import Consumer, ConsumerSources, hash_identifier
from spanlytics.destinations.readme import NOT_VALID_UTF8, ReadmeEncoder
from spanlytics.masking import DEFAULT_FIELD_PATTERN, Masker, MaskingRules
from spanlytics.pipeline import masker_and_consumers
from spanlytics.record import ExceptionInfo, MaskedField, body_text
from tests.support.records import make_record

SECRET = "S3CR3Tdeadbeef0042"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
FIELD_RE = re.compile(DEFAULT_FIELD_PATTERN, re.I)


def masked_body(text: str, content_type: str | None = "application/json") -> str:
    out, _ = Masker().mask_body(text, content_type, "request.body")
    assert out is not None
    return out


# --- 1. JSON that the parser and the text disagree on ---------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f'{{"password": "{SECRET}", "password": null}}',
        f'{{"password": "{SECRET}", "password": ""}}',
        f'{{"user": {{"token": "{SECRET}", "token": null}}, "n": 1}}',
        f'{{"note": "Bearer {SECRET}", "note": ""}}',
    ],
)
def test_a_duplicate_key_cannot_hide_an_earlier_secret(text: str) -> None:
    assert SECRET not in masked_body(text)


@pytest.mark.parametrize(
    "text",
    [
        f"{{'password': '{SECRET}', 'user': 'ann'}}",  # single-quoted keys
        f'{{password: "{SECRET}", user: "ann"}}',  # unquoted keys
        f'\ufeff{{"credentials": {{"key": "{SECRET}"}}}}',  # a byte-order mark
        f')]}}\',\n{{"credentials": {{"key": "{SECRET}"}}}}',  # Angular's anti-XSSI prefix
        f'while(1);{{"credentials": {{"key": "{SECRET}"}}}}',
    ],
)
def test_lenient_json_is_masked(text: str) -> None:
    out = masked_body(text)
    assert SECRET not in out
    assert "[masked]" in out


def test_a_valid_body_after_a_prefix_keeps_the_prefix_and_is_rewritten() -> None:
    out = masked_body(f')]}}\',\n{{"password": "{SECRET}", "n": 1}}')
    assert out == ')]}\',\n{"password":"[masked]","n":1}'


def test_clean_json_with_duplicates_of_innocent_keys_is_kept_byte_identical() -> None:
    text = '{"a": 1, "a": 2, "message": "your token expired"}'
    assert masked_body(text) == text


# --- 2. secrets inside values -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        f"password={SECRET}&user=ann",
        f"Bearer {SECRET}",
        f'mutation {{ login(user: "ann", password: "{SECRET}") {{ token }} }}',
        JWT,
        f"see {JWT} there",
    ],
)
def test_credentials_inside_json_string_values_are_masked(value: str) -> None:
    secret = JWT if JWT in value else SECRET
    out = masked_body(json.dumps({"query": value, "n": 1}))
    assert secret not in out
    assert json.loads(out)["n"] == 1


def test_graphql_variables_stay_readable_around_the_masked_argument() -> None:
    doc = {"query": f'mutation {{ login(user: "ann", password: "{SECRET}") }}'}
    out, masks = Masker().mask_body(json.dumps(doc), "application/json", "request.body")
    assert json.loads(out or "") == {"query": 'mutation { login(user: "ann", password: "[masked]") }'}
    assert masks == [MaskedField("request.body.query", "text:default")]


@pytest.mark.parametrize(
    "query",
    [f"q={JWT}", f"q=Bearer+{SECRET}", f"next=%2Fcb%3Ftoken%3D{SECRET}", f"q=Basic%20{SECRET}"],
)
def test_credentials_under_innocent_query_names_are_masked(query: str) -> None:
    out, masks = Masker().mask_query(query, "request.query")
    assert SECRET not in out and JWT not in out
    assert masks and masks[0].path.startswith("request.query.")


@pytest.mark.parametrize("value", [JWT, f"Bearer {SECRET}", f"Token {SECRET}"])
def test_credentials_under_innocent_header_names_are_masked(value: str) -> None:
    headers, _ = Masker().mask_headers((("x-forwarded-user", value),), "request.headers")
    assert SECRET not in headers[0][1] and JWT not in headers[0][1]


def test_long_random_token_next_to_a_sensitive_name_is_masked_in_text() -> None:
    out, _ = Masker().mask_text("here is my api key 8f9a7d6c5b4a3e2f1d0c please", "b")
    assert out == "here is my api key [masked] please"
    out, _ = Masker().mask_text("your token expired yesterday", "b")
    assert out == "your token expired yesterday"


# --- 3. free text and exceptions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Authorization: Token {SECRET}", "Authorization: [masked]"),
        (f"authorization: SSWS {SECRET}", "authorization: [masked]"),
        (
            'Authorization: Digest username="ann", response="6629fae49393a05397450978507c4ef1"\nnext',
            "Authorization: [masked]\nnext",
        ),
        (f"password={SECRET},{SECRET}", "password=[masked]"),
        (f"password={SECRET};{SECRET} rest", "password=[masked] rest"),
        (
            f"db:\n  password: |\n    {SECRET}\n    {SECRET}\n  user: ann\n",
            "db:\n  password: |\n[masked]\n  user: ann\n",
        ),
        (f"password:\n  {SECRET}\nuser: ann", "password:\n[masked]\nuser: ann"),
        (
            f'<param name="password">{SECRET}</param><param name="user">ann</param>',
            '<param name="password">[masked]</param><param name="user">ann</param>',
        ),
        (
            f'<add key="ApiKey" value="{SECRET}"/><add key="Mode" value="x"/>',
            '<add key="ApiKey" value="[masked]"/><add key="Mode" value="x"/>',
        ),
    ],
)
def test_free_text_forms(text: str, expected: str) -> None:
    out, masks = Masker().mask_text(text, "response.body")
    assert out == expected
    assert masks


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (f"bad password {SECRET}", "bad password [masked]"),
        (f"invalid token {SECRET} for ann", "invalid token [masked] for ann"),
        ("token expired", "token expired"),
        ("password must be at least 8 characters", "password must be at least 8 characters"),
        ("KeyError: 'password'", "KeyError: 'password'"),
    ],
)
def test_exception_text_gets_the_strict_word_heuristic(message: str, expected: str) -> None:
    frame = 'File "/app/auth/views.py", line 3, in login'
    trace = f"Traceback (most recent call last):\n  {frame}\nValueError: {message}"
    record = make_record(exception=ExceptionInfo("ValueError", message, trace))
    out = Masker().mask_record(record)
    assert out.exception is not None
    assert out.exception.message == expected
    assert out.exception.stacktrace.endswith(f"ValueError: {expected}")
    assert 'File "/app/auth/views.py", line 3, in login' in out.exception.stacktrace


def test_exception_modes() -> None:
    message = "bad password hunter2"
    trace = f'Traceback (most recent call last):\n  File "/app/x.py", line 3, in login\nValueError: {message}'
    record = make_record(exception=ExceptionInfo("ValueError", message, trace))
    rules_only = Masker(MaskingRules(exceptions="rules")).mask_record(record).exception
    assert rules_only is not None and rules_only.message == message  # only the general rules
    omitted = Masker(MaskingRules(exceptions="omit")).mask_record(record).exception
    assert omitted == ExceptionInfo("ValueError", "[masked]", 'File "/app/x.py", line 3, in login\n[masked]')
    with pytest.raises(ValueError, match="exceptions must be one of"):
        Masker(MaskingRules(exceptions="keep"))


def test_body_text_gets_only_the_lenient_word_heuristic() -> None:
    assert masked_body("bad password hunter2", "text/plain") == "bad password hunter2"


# --- 4. echoes --------------------------------------------------------------------------------


def test_fastapi_validation_error_input_is_masked_by_its_loc() -> None:
    detail = {
        "detail": [
            {"type": "string_too_short", "loc": ["body", "password"], "msg": "too short", "input": "abc"},
            {"type": "int_parsing", "loc": ["query", "page"], "msg": "not an int", "input": "x"},
        ]
    }
    out = json.loads(masked_body(json.dumps(detail)))
    assert out["detail"][0]["input"] == "[masked]"
    assert out["detail"][1]["input"] == "x"


def test_values_masked_in_the_request_are_masked_where_the_response_repeats_them() -> None:
    record = make_record(
        request_headers=(("x-api-key", SECRET),),
        query="q=Bearer+tok-abc-1234567",
        request_content_type="application/json",
        request_body=json.dumps({"pin": "98765", "user": "ann"}),
        response_content_type="text/html",
        response_body=f"<p>unknown key {SECRET}, pin 98765, user ann</p><a>tok-abc-1234567</a>",
        response_headers=(("x-echo", SECRET),),
        exception=ExceptionInfo("E", f"rejected {SECRET}", "trace"),
    )
    out = Masker().mask_record(record)
    assert out.response_body == "<p>unknown key [masked], pin [masked], user ann</p><a>[masked]</a>"
    assert out.response_headers == (("x-echo", "[masked]"),)
    assert out.exception is not None and SECRET not in out.exception.message
    assert MaskedField("response.body", "echo:request") in out.masked


def test_json_escaped_echo_is_masked() -> None:
    secret = 'pa"ss\\wörd-123'
    record = make_record(
        request_content_type="application/json",
        request_body=json.dumps({"password": secret}),
        response_content_type="application/json",
        response_body=json.dumps({"detail": f"rejected {secret}"}),
    )
    out = Masker().mask_record(record)
    assert json.loads(out.response_body or "") == {"detail": "rejected [masked]"}


# --- 5. fields that are not headers -----------------------------------------------------------


def test_user_agent_and_content_type_fields_are_masked_like_their_headers() -> None:
    agent = f"curl/8.0 token={SECRET}"
    record = make_record(
        user_agent=agent,
        request_headers=(("user-agent", agent),),
        request_content_type=f"application/json; token={SECRET}",
        response_content_type=f"text/plain; sig={SECRET}",
    )
    out = Masker().mask_record(record)
    assert out.user_agent == out.request_headers[0][1] == "curl/8.0 token=[masked]"
    assert out.request_content_type == "application/json; token=[masked]"
    assert out.response_content_type == "text/plain; sig=[masked]"


def test_consumer_from_a_sensitive_header_is_hashed_by_default() -> None:
    headers = {"x-api-key": SECRET, "x-consumer": "acme"}

    def sources(**settings: Any) -> ConsumerSources:
        return masker_and_consumers(Settings.resolve(**settings))[1].sources

    consumer = sources(consumer_from=("header:X-Api-Key",)).resolve(headers.get, None)
    assert consumer is not None and consumer.identifier == hash_identifier(SECRET)
    plain = sources(consumer_header="X-Consumer").resolve(headers.get, None)
    assert plain is not None and plain.identifier == "acme"
    keyed = sources(consumer_header="X-Api-Key", consumer_hash_key="k")
    assert keyed.resolve(headers.get, None) == Consumer(hash_identifier(SECRET, "k"))
    allowed = sources(consumer_header="X-Api-Key", mask_allow=("x-api-key",))
    assert allowed.resolve(headers.get, None) == Consumer(SECRET)  # allow-listed: not a secret


def test_consumer_sources_take_the_sensitivity_policy_as_a_callable() -> None:
    sources = ConsumerSources.parse([], "X-Token", False, sensitive_header=Masker().is_sensitive_header)
    assert sources.resolve({"x-token": "t-1"}.get, None) == Consumer(hash_identifier("t-1"))


# --- 6. parsing as the frameworks parse -------------------------------------------------------


@pytest.mark.parametrize("query", [f"password=abc;{SECRET}", f"password=abc%3B{SECRET}&n=1"])
def test_only_ampersands_separate_query_pairs(query: str) -> None:
    out, masks = Masker().mask_query(query, "request.query")
    assert SECRET not in out
    assert masks == [MaskedField("request.query.password", "field:default")]


def test_only_ampersands_separate_form_pairs() -> None:
    out = masked_body(f"user=ann&password=abc;{SECRET}", "application/x-www-form-urlencoded")
    assert out == "user=ann&password=%5Bmasked%5D"


# --- 7. charsets ------------------------------------------------------------------------------


@pytest.mark.parametrize("charset", ["utf-16", "utf-16-le", "latin-1", "cp1252", "utf-32"])
def test_a_declared_charset_is_honoured_so_masking_can_read_the_text(charset: str) -> None:
    raw = f'{{"password": "{SECRET}", "name": "Jörg"}}'.encode(charset)
    text = body_text(raw, f"application/json; charset={charset}", len(raw))
    assert text is not None and "\x00" not in text
    assert json.loads(masked_body(text)) == {"password": "[masked]", "name": "Jörg"}


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_wide_text_without_a_charset_is_recognised(codec: str) -> None:
    raw = f"password={SECRET}".encode(codec)
    text = body_text(raw, "text/plain", len(raw))
    assert text == f"password={SECRET}"
    assert masked_body(text, "text/plain") == "password=[masked]"


def test_binary_with_a_few_nuls_stays_lossy_text() -> None:
    raw = bytes(range(256))
    assert body_text(raw, "text/plain", 256) == raw.decode("utf-8", errors="replace")


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"\x00" * 64, "text/plain"),  # NULs in any reading
        (f"password={SECRET}".encode(), "text/plain; charset=x-klingon"),  # unknown charset
    ],
)
def test_text_that_cannot_be_read_is_treated_as_binary(raw: bytes, content_type: str) -> None:
    text = body_text(raw, content_type, len(raw))
    assert text == f"[body omitted: {len(raw)} bytes of {content_type.split(';', maxsplit=1)[0]}]"


# --- 8. default rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        *["iban", "IBAN", "account_number", "accountNumber", "bank_account", "routing_number"],
        *["routingNo", "sort_code", "credit_card", "cardNo", "card_numbers"],
        *["security_code", "otp", "OTP", "otp_code", "totp", "verification_code", "backup_code"],
        *["pin", "PIN", "userPin", "pin_code", "pinCode", "new-pin", "X-Amz-Signature", "signature"],
        *["sig", "jwt", "id_jwt", "client_assertion", "api.key", "x-api.key", "API:KEY", "csrf"],
        *["connect.sid", "PHPSESSID", "passphrase", "passcode", "pass", "userPass", "dsn"],
        *["connection_string", "encryption_key", "x_csrf", "social_security"],
    ],
)
def test_broadened_default_field_names(name: str) -> None:
    out, masks = Masker().mask_query(f"{name}=v4lue", "request.query")
    assert masks, name
    assert out.endswith("=%5Bmasked%5D")


@pytest.mark.parametrize(
    "name",
    [
        *["shipping", "pinned", "spinner", "opinion", "SHIPPING", "footprint", "hotpath", "compass"],
        *["passport", "bypass", "design", "signal", "inside", "consider", "postcode", "code"],
    ],
)
def test_common_names_are_not_masked(name: str) -> None:
    out, masks = Masker().mask_query(f"{name}=v4lue", "request.query")
    assert masks == [] and out == f"{name}=v4lue"


@pytest.mark.parametrize(
    "name",
    [
        "x-amzn-oidc-data",
        "cf-access-jwt-assertion",
        "x-goog-iap-jwt-assertion",
        "dpop",
        "x-ms-client-principal",
    ],
)
def test_jwt_carrying_headers(name: str) -> None:
    headers, masks = Masker().mask_headers(((name, "opaque"),), "request.headers")
    assert headers == ((name, "[masked]"),)
    assert masks == [MaskedField(f"request.headers.{name}", "header:default")]


@pytest.mark.parametrize(
    "location",
    [
        f"https://app.test/cb?code={SECRET}&state=xyz",
        f"https://app.test/cb#access_token={SECRET}&token_type=bearer",
        f"/cb?state=xyz&code={SECRET}",
    ],
)
def test_oauth_codes_in_location_redirects(location: str) -> None:
    headers, masks = Masker().mask_headers((("Location", location),), "response.headers")
    assert SECRET not in headers[0][1]
    assert headers[0][1].startswith(location[:12])
    assert masks


def test_rule_lists_are_data_with_a_reason_per_entry() -> None:
    from spanlytics.masking import rules

    for table in (rules.FIELD_SUBSTRINGS, rules.FIELD_WORDS, rules.HEADER_SUBSTRINGS, rules.URL_PARAMS):
        for pattern, why in table:
            re.compile(pattern)
            assert len(why) > 8, pattern


# --- 9. ReadMe --------------------------------------------------------------------------------


def test_readme_sends_an_undecodable_body_as_its_sdk_placeholder() -> None:
    raw = b"caf\xe9 \xff"
    text = body_text(raw, "text/plain", len(raw))
    record = make_record(
        consumer=Consumer("c1"),
        request_content_type="text/plain",
        request_body=text,
        response_content_type="text/plain",
        response_body=text,
    )
    entry = ReadmeEncoder().entry(record)
    assert entry is not None
    har = entry["request"]["log"]["entries"][0]
    assert har["request"]["postData"] == {"mimeType": "text/plain", "text": NOT_VALID_UTF8}
    assert har["response"]["content"]["text"] == NOT_VALID_UTF8
    latin = body_text(raw[:4], "text/plain; charset=latin-1", 4)  # decodable in its charset
    record = make_record(consumer=Consumer("c1"), request_content_type="text/plain", request_body=latin)
    entry = ReadmeEncoder().entry(record)
    assert entry is not None
    assert entry["request"]["log"]["entries"][0]["request"]["postData"]["text"] == "café"


# --- values that are secrets whatever their name (found by the leak property test) -------------


@pytest.mark.parametrize(
    ("text", "expected", "rule"),
    [
        ("pay with 4111 1111 1111 1111 now", "pay with [masked] now", "text:card"),
        ("card=4111-1111-1111-1111", "card=[masked]", "text:default"),
        ("id 4111111111111112 (Luhn fails)", "id 4111111111111112 (Luhn fails)", None),
        ("at 1733059200000 ms", "at 1733059200000 ms", None),  # a timestamp, not a card
        ("to DE89370400440532013000 please", "to [masked] please", "text:iban"),
        ("to DE89 3704 0044 0532 0130 00.", "to [masked].", "text:iban"),
        ("code AB12CDEFGHIJKLMNOPQR", "code AB12CDEFGHIJKLMNOPQR", None),  # no such country
        (
            "postgres://bob:hunter2@db.internal:5432/app",
            "postgres://bob:[masked]@db.internal:5432/app",
            "text:credentials",
        ),
        ("the token is 9f8e7d6c5b4a39281706", "the token is [masked]", "text:default"),
        ("the token is expired", "the token is expired", None),
        ("api_key: &k 9f8e7d6c\nother: *k\n", "api_key: &k [masked]\nother: *k\n", "text:default"),
    ],
)
def test_secrets_by_their_shape(text: str, expected: str, rule: str | None) -> None:
    out, masks = Masker().mask_text(text, "b")
    assert out == expected
    assert [m.rule for m in masks] == ([rule] if rule else [])


@pytest.mark.parametrize("name", ["card", "cc", "ccnum", "pan", "one_time_code", "oneTimePin", "cardNo"])
def test_card_and_one_time_names(name: str) -> None:
    out, masks = Masker().mask_query(f"{name}=v4lue", "request.query")
    assert out == f"{name}=%5Bmasked%5D" and masks


@pytest.mark.parametrize(
    "name", ["cardinal", "discard", "accept", "success", "company", "span", "panel", "phone"]
)
def test_card_and_one_time_names_spare_common_words(name: str) -> None:
    assert Masker().mask_query(f"{name}=v4lue", "request.query") == (f"{name}=v4lue", [])


# --- path segments ------------------------------------------------------------------------------


def test_route_parameters_with_sensitive_names_and_jwts_in_the_path_are_masked() -> None:
    record = make_record(
        method="GET",
        route="/reset/{token}/users/{user_id}",
        path=f"/reset/{SECRET}/users/42",
        url=f"http://api.test/reset/{SECRET}/users/42?x=1",
        query="x=1",
    )
    out = Masker().mask_record(record)
    assert out.path == "/reset/%5Bmasked%5D/users/42"
    assert out.url == "http://api.test/reset/%5Bmasked%5D/users/42?x=1"
    assert MaskedField("request.path.token", "field:default") in out.masked
    jwt_record = make_record(
        method="GET", route=None, path=f"/verify/{JWT}", url=f"http://api.test/verify/{JWT}"
    )
    out = Masker().mask_record(jwt_record)
    assert JWT not in out.path and JWT not in out.url
    assert out.masked == (MaskedField("request.path.2", "text:credentials"),)


def test_a_scrubbed_record_keeps_the_route_template_as_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    masker = Masker()

    def boom(*args: object) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(masker, "mask_headers", boom)
    record = make_record(
        route="/reset/{token}", path=f"/reset/{SECRET}", url=f"http://api.test/reset/{SECRET}"
    )
    out = masker.mask_record(record)
    assert (out.path, out.url) == ("/reset/{token}", "http://api.test/reset/{token}")
