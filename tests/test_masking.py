"""Tests for spanlytics.masking: default rules, extension points, fail-closed behaviour and
properties over generated records (no secret ever survives; nothing else changes)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import string
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanlytics import masking
from spanlytics.masking import (
    DEFAULT_FIELD_PATTERN,
    DEFAULT_HEADER_PATTERN,
    FAILED,
    KEEP,
    Masker,
    MaskingRules,
)
from spanlytics.masking import verdicts as masking_verdicts
from spanlytics.record import ExceptionInfo, MaskedField, RequestRecord
from tests.support.records import make_record

SECRET = "S3CR3Tdeadbeef0042"
FIELD_RE = re.compile(DEFAULT_FIELD_PATTERN, re.I)
HEADER_RE = re.compile(DEFAULT_HEADER_PATTERN, re.I)


def dump(record: RequestRecord) -> str:
    """Everything in a record, as text, for 'the secret appears nowhere' checks."""
    return repr(record) + json.dumps(dataclasses.asdict(record), default=str, ensure_ascii=False)


def body(text: str, content_type: str | None = "application/json", masker: Masker | None = None) -> str:
    out, _ = (masker or Masker()).mask_body(text, content_type, "request.body")
    assert out is not None
    return out


# --- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-apikey",
        "api_key",
        "x-auth-token",
        "x-client-secret",
        "x-session-id",
        "x-csrf-token",
        "x-xsrf-token",
        "Authorization",
        "X-API-KEY",
        "X-Password",  # the field defaults apply to header names too
    ],
)
def test_default_sensitive_headers_are_replaced_whole(name: str) -> None:
    headers, masked = Masker().mask_headers(((name, f"Bearer {SECRET}"),), "request.headers")
    assert headers == ((name, "[masked]"),)
    assert masked == [MaskedField(f"request.headers.{name.lower()}", "header:default")]


def test_ordinary_headers_are_kept() -> None:
    headers = (
        ("content-type", "application/json; charset=utf-8"),
        ("accept", "text/html,application/xhtml+xml"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64)"),
        ("content-disposition", 'form-data; name="file"; filename="a.txt"'),
        ("x-empty-token", ""),  # sensitive name, but nothing to hide
    )
    assert Masker().mask_headers(headers, "request.headers") == (headers, [])


def test_free_text_in_other_headers_is_masked() -> None:
    headers = (("referer", f"https://app.test/cb?access_token={SECRET}&page=2"),)
    out, masked = Masker().mask_headers(headers, "request.headers")
    assert out == (("referer", "https://app.test/cb?access_token=[masked]&page=2"),)
    assert masked == [MaskedField("request.headers.referer", "text:default")]


# --- query strings and the URL ------------------------------------------------------------


def test_query_parameters_masked_case_insensitively_and_camel_case() -> None:
    query = f"q=shoes&api_key={SECRET}&apiKey=a&ACCESS_TOKEN=b&Password=c&page=2"
    out, masked = Masker().mask_query(query, "request.query")
    assert out == (
        "q=shoes&api_key=%5Bmasked%5D&apiKey=%5Bmasked%5D&ACCESS_TOKEN=%5Bmasked%5D"
        "&Password=%5Bmasked%5D&page=2"
    )
    assert [m.path for m in masked] == [
        "request.query.api_key",
        "request.query.apiKey",
        "request.query.ACCESS_TOKEN",
        "request.query.Password",
    ]
    assert {m.rule for m in masked} == {"field:default"}


def test_query_names_are_decoded_and_other_pieces_stay_byte_identical() -> None:
    query = f"api%5Fkey={SECRET}&api+key=x&name=J%C3%B6rg+M&flag&empty=&a=1;token=y"
    out, masked = Masker().mask_query(query, "request.query")
    assert out == (
        "api%5Fkey=%5Bmasked%5D&api+key=%5Bmasked%5D&name=J%C3%B6rg+M&flag&empty=&a=1;token=%5Bmasked%5D"
    )
    # only "&" separates pairs (as in Starlette and Werkzeug): "1;token=y" is the value of
    # "a", whose free text holds the secret
    assert [(m.path, m.rule) for m in masked] == [
        ("request.query.api_key", "field:default"),
        ("request.query.api key", "field:default"),
        ("request.query.a", "text:default"),
    ]


def test_record_query_and_url_agree() -> None:
    record = make_record(query=f"token={SECRET}&q=1")
    masked = Masker().mask_record(record)
    assert masked.query == "token=%5Bmasked%5D&q=1"
    assert masked.url == "http://api.test/items?token=%5Bmasked%5D&q=1"
    assert masked.url.split("?", 1)[1] == masked.query
    assert MaskedField("request.query.token", "field:default") in masked.masked


def test_url_with_its_own_query_is_masked_too() -> None:
    record = make_record(query="", url=f"http://api.test/items?session={SECRET}")
    masked = Masker().mask_record(record)
    assert masked.url == "http://api.test/items?session=%5Bmasked%5D"
    assert SECRET not in dump(masked)


# --- JSON bodies --------------------------------------------------------------------------


def test_json_at_any_depth_with_camel_case_names() -> None:
    doc = {
        "user": {"name": "ann", "password": SECRET},
        "items": [{"sku": 1, "token": "t1"}, {"sku": 2, "meta": [{"apiKey": "k", "ok": True}]}],
        "payment": {"cardNumber": "4111", "cvv": "123", "amount": 9.5},
        "privateKey": "pk",
        "X-Api-Key": "xk",
        "accessToken": "at",
    }
    out, masked = Masker().mask_body(json.dumps(doc), "application/json", "response.body")
    assert out is not None
    parsed = json.loads(out)
    assert parsed == {
        "user": {"name": "ann", "password": "[masked]"},
        "items": [
            {"sku": 1, "token": "[masked]"},
            {"sku": 2, "meta": [{"apiKey": "[masked]", "ok": True}]},
        ],
        "payment": {"cardNumber": "[masked]", "cvv": "[masked]", "amount": 9.5},
        "privateKey": "[masked]",
        "X-Api-Key": "[masked]",
        "accessToken": "[masked]",
    }
    assert [m.path for m in masked] == [
        "response.body.user.password",
        "response.body.items[0].token",
        "response.body.items[1].meta[0].apiKey",
        "response.body.payment.cardNumber",
        "response.body.payment.cvv",
        "response.body.privateKey",
        "response.body.X-Api-Key",
        "response.body.accessToken",
    ]


def test_json_container_under_sensitive_key_is_replaced_whole() -> None:
    text = json.dumps({"credentials": {"user": "ann", "pass": SECRET}, "session": [SECRET, 1], "n": 1})
    assert json.loads(body(text)) == {"credentials": "[masked]", "session": "[masked]", "n": 1}


def test_json_sent_as_a_string_value_is_masked_inside() -> None:
    doc = {"payload": json.dumps({"apiKey": SECRET, "n": [1]}), "list": ['[{"token": 1}]', "{not json"]}
    out, masked = Masker().mask_body(json.dumps(doc), "application/json", "request.body")
    assert out is not None
    parsed = json.loads(out)
    assert json.loads(parsed["payload"]) == {"apiKey": "[masked]", "n": [1]}
    assert json.loads(parsed["list"][0]) == [{"token": "[masked]"}]
    assert parsed["list"][1] == "{not json"
    assert [m.path for m in masked] == ["request.body.payload.apiKey", "request.body.list[0][0].token"]


def test_json_output_is_compact_and_keeps_non_ascii() -> None:
    text = '{ "name" : "Jörg ✓", "token" : "x", "n" : [1, 2.5, null, true] }'
    assert body(text) == '{"name":"Jörg ✓","token":"[masked]","n":[1,2.5,null,true]}'


def test_json_empty_values_are_left_alone() -> None:
    text = '{"password": "", "token": null, "n": 1}'
    assert Masker().mask_body(text, "application/json", "request.body") == (text, [])


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/vnd.api+json", "application/octet"]
)
def test_json_is_recognised_by_shape_whatever_the_content_type(content_type: str | None) -> None:
    text = f'  [{{"id": 1, "secret": "{SECRET}"}}]'
    assert json.loads(body(text, content_type)) == [{"id": 1, "secret": "[masked]"}]


def test_clean_json_takes_the_fast_path_and_is_returned_as_is() -> None:
    text = json.dumps({"items": [{"id": i, "name": f"item {i}"} for i in range(20)]}, indent=2)
    out, masked = Masker().mask_body(text, "application/json", "request.body")
    assert out is text
    assert masked == []


def test_json_mentioning_a_name_only_in_values_is_returned_byte_identical() -> None:
    text = '{ "message": "your token expired",  "code": 401 }'
    out, masked = Masker().mask_body(text, "application/json", "request.body")
    assert out == text
    assert masked == []


def test_escaped_keys_are_decoded_before_matching() -> None:
    text = '{"p\\u0061ssword": "' + SECRET + '", "n\\u00e4me": "x"}'
    assert json.loads(body(text)) == {"password": "[masked]", "näme": "x"}
    truncated = '{"a": 1, "\\u0074oken": "' + SECRET + '", "b": "cut he'
    out, masked = Masker().mask_body(truncated, "application/json", "request.body")
    assert out == '{"a": 1, "\\u0074oken": "[masked]", "b": "cut he'
    assert masked == [MaskedField("request.body.token", "field:default")]


def test_lone_surrogate_escapes_stay_escaped() -> None:
    out = body('{"token": "x", "s": "\\ud800"}')
    out.encode("utf-8")  # would raise on a raw lone surrogate
    assert json.loads(out) == {"token": "[masked]", "s": "\ud800"}


def test_unicode_case_folds_do_not_bypass_the_fast_path() -> None:
    # U+017F LATIN SMALL LETTER LONG S equals "s" under re.IGNORECASE
    assert json.loads(body('{"\u017fecret": "x"}')) == {"\u017fecret": "[masked]"}


# --- malformed and truncated JSON ---------------------------------------------------------


def test_truncated_json_masks_scalars_and_tracks_paths() -> None:
    text = (
        '{"items": [{"id": 1, "token": "t1"}, {"id": 2, "token": 42, "note": "a, b: {c}"}],'
        ' "user": {"password": "' + SECRET[:9]
    )
    out, masked = Masker().mask_body(text, "application/json", "response.body")
    assert out == (
        '{"items": [{"id": 1, "token": "[masked]"}, {"id": 2, "token": "[masked]", "note": "a, b: {c}"}],'
        ' "user": {"password": "[masked]"'
    )
    assert [m.path for m in masked] == [
        "response.body.items[0].token",
        "response.body.items[1].token",
        "response.body.user.password",
    ]


def test_truncated_json_container_is_masked_to_its_close_or_the_end() -> None:
    closed = '{"auth": {"user": "u", "k": [1, "}"]}, "n": 1, "x": "cut'
    assert body(closed) == '{"auth": "[masked]", "n": 1, "x": "cut'
    open_to_end = '{"n": 1, "credentials": [{"user": "u", "pass": "' + SECRET
    assert body(open_to_end) == '{"n": 1, "credentials": "[masked]"'


def test_malformed_json_is_scanned_tolerantly() -> None:
    text = '{"a": 1,, "secret": \'x\' "token": tru, "b": "q\\"uote", "pwd": "' + SECRET + '",}'
    out = body(text, "text/plain")
    assert SECRET not in out
    assert '"b": "q\\"uote"' in out
    assert '"pwd": "[masked]"' in out


@settings(max_examples=500)
# no "c": "cc" is a sensitive name (card numbers), so a bare key cc must be masked
@given(st.text(alphabet=' \t\n{}[]:,"\\abxyz019.-\u00e9', max_size=60))
def test_scanner_leaves_any_text_without_sensitive_keys_byte_identical(text: str) -> None:
    out, masked, _ = Masker()._scan_json(text, "b")
    assert out == text
    assert masked == []


def test_deeply_nested_json_falls_back_to_the_scanner() -> None:
    text = '{"a":' * 3000 + '{"token":"' + SECRET + '"}' + "}" * 3000
    out, masked = Masker().mask_body(text, "application/json", "request.body")
    assert out is not None
    assert SECRET not in out
    assert masked[0].path.endswith(".a.token")


def test_text_that_merely_starts_with_a_bracket_gets_the_text_heuristic() -> None:
    out = body(f"[INFO] login failed password={SECRET} user=ann", "text/plain")
    assert out == "[INFO] login failed password=[masked] user=ann"


# --- form bodies --------------------------------------------------------------------------


def test_form_body() -> None:
    text = f"user=ann&password={quote_plus(SECRET + ' x')}&card_number=4111&note=hi+there%21&flag"
    out, masked = Masker().mask_body(text, "application/x-www-form-urlencoded; charset=utf-8", "request.body")
    assert out == "user=ann&password=%5Bmasked%5D&card_number=%5Bmasked%5D&note=hi+there%21&flag"
    assert masked == [
        MaskedField("request.body.password", "field:default"),
        MaskedField("request.body.card_number", "field:default"),
    ]


# --- free text, XML -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"password={SECRET} next", "password=[masked] next"),
        (f"db.password: {SECRET}, retry", "db.password: [masked], retry"),
        (f'{{"apiKey": "{SECRET}", "id": 3}}x', '{"apiKey": "[masked]", "id": 3}x'),
        (f"token='{SECRET}' user='ann'", "token='[masked]' user='ann'"),
        (f"User(name=ann, secret={SECRET})", "User(name=ann, secret=[masked])"),
        (f"Authorization: Bearer {SECRET}", "Authorization: [masked]"),
        (f"sent bearer {SECRET} done", "sent bearer [masked] done"),
        ("creds Basic dXNlcjpwYXNz== ok", "creds Basic [masked] ok"),
        (f"user=password={SECRET}", "user=password=[masked]"),
        (
            f'"api key": "{SECRET}", \'client secret\' = {SECRET}',
            '"api key": "[masked]", \'client secret\' = [masked]',
        ),
        ("nothing to see: here=1", "nothing to see: here=1"),
    ],
)
def test_text_heuristic(text: str, expected: str) -> None:
    out, masked = Masker().mask_text(text, "exception.message")
    assert out == expected
    assert all(m.path == "exception.message" for m in masked)
    assert bool(masked) == (text != expected)


def test_text_rules_are_named() -> None:
    _, masked = Masker().mask_text(f"token={SECRET} and Bearer {SECRET}", "x")
    assert masked == [MaskedField("x", "text:default"), MaskedField("x", "text:credentials")]


def test_xml_elements_and_attributes() -> None:
    text = (
        '<?xml version="1.0"?><login user="ann" password="' + SECRET + '">'
        "<name>ann</name><ns:token>" + SECRET + "</ns:token>"
        "<credentials><user>u</user><pin>1</pin></credentials><n>1</n></login>"
    )
    out = body(text, "application/xml")
    assert out == (
        '<?xml version="1.0"?><login user="ann" password="[masked]">'
        "<name>ann</name><ns:token>[masked]</ns:token>"
        "<credentials>[masked]</credentials><n>1</n></login>"
    )


def test_unclosed_sensitive_xml_element_is_masked_to_the_end() -> None:
    assert body("<a><secret><v>" + SECRET, "text/xml") == "<a><secret>[masked]"


def test_non_utf8_replacement_characters_are_handled() -> None:
    raw = b'{"password": "\xff\xfe", "name": "J\xf6rg"}'.decode("utf-8", errors="replace")
    assert json.loads(body(raw)) == {"password": "[masked]", "name": "J\ufffdrg"}
    truncated = raw[:-4]
    assert body(truncated) == '{"password": "[masked]", "name": "J\ufffd'
    text = b"token=\xff\xfeabc rest \xff".decode("utf-8", errors="replace")
    assert body(text, "text/plain") == "token=[masked] rest \ufffd"


def test_omitted_body_placeholder_is_left_alone_but_lookalikes_are_not() -> None:
    placeholder = "[body omitted: 2048 bytes of image/png]"
    assert Masker().mask_body(placeholder, "image/png", "response.body") == (placeholder, [])
    sneaky = f"[body omitted: 1 bytes of x] token={SECRET}"
    assert SECRET not in body(sneaky, "text/plain")
    assert Masker().mask_body(None, "application/json", "response.body") == (None, [])


# --- whole records ------------------------------------------------------------------------


def test_mask_record_masks_everything_and_lists_it_without_values() -> None:
    record = make_record(
        query=f"api_key={SECRET}",
        request_headers=(("authorization", f"Basic {SECRET}"), ("accept", "*/*")),
        response_headers=(("set-cookie", f"sid={SECRET}; Path=/"),),
        request_content_type="application/json",
        request_body=json.dumps({"user": "ann", "password": SECRET}),
        response_content_type="text/plain",
        response_body=f"your session={SECRET}",
        exception=ExceptionInfo(
            type="ValueError",
            message=f"bad token={SECRET}",
            stacktrace=f'Traceback:\n  File "app.py", line 1\nValueError: Authorization: Bearer {SECRET}',
        ),
    )
    masked = Masker().mask_record(record)
    assert SECRET not in dump(masked)
    assert masked.request_headers == (("authorization", "[masked]"), ("accept", "*/*"))
    assert masked.exception is not None
    assert masked.exception.message == "bad token=[masked]"
    assert masked.exception.type == "ValueError"
    assert masked.masked == (
        MaskedField("request.headers.authorization", "header:default"),
        MaskedField("response.headers.set-cookie", "header:default"),
        MaskedField("request.query.api_key", "field:default"),
        MaskedField("request.body.password", "field:default"),
        MaskedField("response.body", "text:default"),
        MaskedField("exception.message", "text:default"),
        MaskedField("exception.stacktrace", "text:default"),
    )
    assert record.request_body is not None and SECRET in record.request_body  # input untouched
    untouched = {"record_id", "trace_id", "method", "route", "path", "status", "consumer"}
    assert all(getattr(masked, f) == getattr(record, f) for f in untouched)


def test_clean_record_is_equal_after_masking() -> None:
    record = make_record(
        query="q=1",
        request_headers=(("accept", "application/json"),),
        request_content_type="application/json",
        request_body='{"q": "shoes", "page": 2}',
        exception=ExceptionInfo("KeyError", "missing 'sku'", "Traceback ..."),
    )
    assert Masker().mask_record(record) == record


def test_masked_list_is_deduplicated() -> None:
    record = make_record(response_headers=(("set-cookie", "a=1"), ("set-cookie", "b=2")))
    assert Masker().mask_record(record).masked == (
        MaskedField("response.headers.set-cookie", "header:default"),
    )


# --- rules: allow list, extra patterns, replacement, callback -----------------------------


def test_allow_list_is_exact_and_case_insensitive_and_skips_the_callback() -> None:
    seen: list[str] = []

    def callback(path: str, value: str, rule: str) -> None:
        seen.append(path)

    masker = Masker(MaskingRules(allow=("Author", "x-auth-user"), callback=callback))
    text = json.dumps({"author": "ann", "AUTHOR": "bob", "authors": ["c"], "auth": "d"})
    assert json.loads(body(text, masker=masker)) == {
        "author": "ann",
        "AUTHOR": "bob",
        "authors": "[masked]",
        "auth": "[masked]",
    }
    headers, _ = masker.mask_headers((("X-Auth-User", "ann"), ("x-auth", "z")), "request.headers")
    assert headers == (("X-Auth-User", "ann"), ("x-auth", "[masked]"))
    assert seen == ["request.body.authors", "request.body.auth", "request.headers.x-auth"]


def test_extra_patterns_extend_the_defaults() -> None:
    # (pin, iban and sig are defaults now: the custom names here are others)
    masker = Masker(MaskingRules(header_patterns=(r"x-tenant-ref",), field_patterns=(r"^dob$", "nickname")))
    headers, masked = masker.mask_headers(
        (("X-Tenant-Ref", "s"), ("authorization", "a"), ("x-tenant", "t")), "request.headers"
    )
    assert headers == (("X-Tenant-Ref", "[masked]"), ("authorization", "[masked]"), ("x-tenant", "t"))
    assert [m.rule for m in masked] == ["header:custom", "header:default"]
    out, masked = masker.mask_body('{"dob": "1970", "dobby": 1, "NICKNAME": "DE00", "token": "t"}', None, "b")
    assert out == '{"dob":"[masked]","dobby":1,"NICKNAME":"[masked]","token":"[masked]"}'
    assert [m.rule for m in masked] == ["field:custom", "field:custom", "field:default"]


def test_anchored_pattern_disables_the_fast_path_instead_of_leaking() -> None:
    masker = Masker(MaskingRules(field_patterns=(r"^pin$",)))
    assert body('{"pin": "1234"}', masker=masker) == '{"pin":"[masked]"}'
    assert masker.mask_text("pin=1234", "m")[0] == "pin=[masked]"


def test_a_lone_string_counts_as_one_name_not_as_letters() -> None:
    masker = Masker(MaskingRules(allow="author", field_patterns="nick"))  # type: ignore[arg-type]
    text = '{"author": "ann", "a": 1, "nick": "DE00", "n": 2}'
    assert body(text, masker=masker) == '{"author":"ann","a":1,"nick":"[masked]","n":2}'


@pytest.mark.parametrize("pattern", [r"pin(?!\")", r"(?<!\")pin", r"\Apin\Z"])
def test_context_sensitive_patterns_disable_the_fast_path(pattern: str) -> None:
    masker = Masker(MaskingRules(field_patterns=(pattern,)))
    assert body('{"pin": "1234"}', masker=masker) == '{"pin":"[masked]"}'


def test_escapes_cannot_hide_a_custom_name_from_the_fast_path() -> None:
    masker = Masker(MaskingRules(field_patterns=("a/b",)))
    assert body('{"a\\/b": "1234"}', masker=masker) == '{"a/b":"[masked]"}'


def test_invalid_pattern_is_reported_at_construction() -> None:
    with pytest.raises(ValueError, match="invalid field pattern"):
        Masker(MaskingRules(field_patterns=("(unclosed",)))


def test_custom_replacement() -> None:
    masker = Masker(MaskingRules(replacement="<redacted>"))
    assert masker.mask_query("token=x", "q")[0] == "token=%3Credacted%3E"
    assert body('{"token": "x"}', masker=masker) == '{"token":"<redacted>"}'
    assert masker.mask_headers((("cookie", "a=b"),), "h")[0] == (("cookie", "<redacted>"),)


def test_callback_keep_replace_default() -> None:
    calls: list[tuple[str, str, str]] = []

    def callback(path: str, value: str, rule: str) -> object:
        calls.append((path, value, rule))
        if path.endswith("keep_token"):
            return KEEP
        if path.endswith("hash_token"):
            return f"hashed:{len(value)}"
        return None

    masker = Masker(MaskingRules(callback=callback))
    text = json.dumps({"keep_token": "k", "hash_token": "abcd", "token": "t", "auth": {"a": [1]}})
    out, masked = masker.mask_body(text, "application/json", "request.body")
    assert out is not None
    assert json.loads(out) == {
        "keep_token": "k",
        "hash_token": "hashed:4",
        "token": "[masked]",
        "auth": "[masked]",
    }
    assert calls == [
        ("request.body.keep_token", "k", "field:default"),
        ("request.body.hash_token", "abcd", "field:default"),
        ("request.body.token", "t", "field:default"),
        ("request.body.auth", '{"a": [1]}', "field:default"),
    ]
    assert [m.path for m in masked] == ["request.body.hash_token", "request.body.token", "request.body.auth"]
    assert masker.mask_query("keep_token=a%20b", "request.query") == ("keep_token=a%20b", [])
    assert calls[-1] == ("request.query.keep_token", "a b", "field:default")


def test_callback_keep_on_a_container_still_masks_inside_it() -> None:
    masker = Masker(MaskingRules(callback=lambda path, value, rule: KEEP if path == "b.auth" else None))
    text = json.dumps({"auth": {"method": "oauth", "token": SECRET}})
    out, _ = masker.mask_body(text, None, "b")
    assert json.loads(out or "") == {"auth": {"method": "oauth", "token": "[masked]"}}


def test_callback_that_raises_fails_closed_and_logs_only_the_type(caplog: pytest.LogCaptureFixture) -> None:
    def callback(path: str, value: str, rule: str) -> str:
        raise RuntimeError(f"boom {value}")

    masker = Masker(MaskingRules(callback=callback))
    with caplog.at_level(logging.WARNING, logger="spanlytics.masking"):
        out = body(json.dumps({"token": SECRET}), masker=masker)
        headers, _ = masker.mask_headers((("authorization", SECRET),), "h")
    assert out == '{"token":"[masked]"}'
    assert headers == (("authorization", "[masked]"),)
    assert "RuntimeError" in caplog.text
    assert SECRET not in caplog.text
    assert len(caplog.records) == 1  # throttled


def test_callback_returning_a_non_string_masks() -> None:
    masker = Masker(MaskingRules(callback=lambda path, value, rule: 42))
    assert body('{"token": "x"}', masker=masker) == '{"token":"[masked]"}'


# --- failing closed -----------------------------------------------------------------------


def _boom(*args: object) -> Any:
    raise RuntimeError(SECRET)


def test_internal_body_error_fails_closed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    masker = Masker()
    monkeypatch.setattr(masker, "_walk", _boom)
    with caplog.at_level(logging.WARNING, logger="spanlytics.masking"):
        out = masker.mask_body(json.dumps({"token": SECRET}), "application/json", "request.body")
    assert out == (FAILED, [MaskedField("request.body", "mask:error")])
    assert "RuntimeError" in caplog.text
    assert SECRET not in caplog.text


def test_internal_query_error_keeps_query_and_url_in_agreement(monkeypatch: pytest.MonkeyPatch) -> None:
    masker = Masker()
    monkeypatch.setattr(masker, "_mask_pairs", _boom)
    masked = masker.mask_record(make_record(query=f"token={SECRET}"))
    assert masked.query == quote(FAILED)
    assert masked.url == f"http://api.test/items?{quote(FAILED)}"
    assert MaskedField("request.query", "mask:error") in masked.masked
    assert SECRET not in dump(masked)


def test_internal_text_and_header_errors_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    masker = Masker()
    monkeypatch.setattr(masker, "_mask_text", _boom)
    assert masker.mask_text(f"token={SECRET}", "exception.message") == (
        FAILED,
        [MaskedField("exception.message", "mask:error")],
    )
    monkeypatch.setattr(masker, "_header_rule", _boom)
    headers, masked = masker.mask_headers((("authorization", SECRET), ("accept", "*/*")), "request.headers")
    assert headers == (("authorization", FAILED), ("accept", FAILED))
    assert masked == [MaskedField("request.headers", "mask:error")]


def test_unexpected_record_error_scrubs_the_whole_record(monkeypatch: pytest.MonkeyPatch) -> None:
    masker = Masker()
    monkeypatch.setattr(masker, "mask_headers", _boom)
    record = make_record(
        query=f"q={SECRET}",
        request_headers=(("x-note", SECRET),),
        request_body=SECRET,
        response_body=SECRET,
        exception=ExceptionInfo("E", SECRET, SECRET),
    )
    masked = masker.mask_record(record)
    assert SECRET not in dump(masked)
    assert masked.masked == (MaskedField("record", "mask:error"),)
    assert masked.request_body == FAILED
    assert masked.url == f"http://api.test/items?{quote(FAILED)}"


# --- engine details -----------------------------------------------------------------------


def test_name_cache_stays_bounded() -> None:
    masker = Masker()
    for i in range(masking_verdicts.CACHE_MAX + 50):
        masker.mask_query(f"k{i}=1", "q")
    assert 0 < len(masker._field_cache) <= masking_verdicts.CACHE_MAX


def test_concurrent_use_gives_the_same_results_as_serial_use() -> None:
    records = [
        make_record(
            record_id=str(i),
            query=f"token{i}={SECRET}&n{i}=1",
            request_body=json.dumps({f"k{i}": i, "password": SECRET, "list": [{"apiKey": i}]}),
            request_headers=((f"x-h{i}", "v"), ("authorization", SECRET)),
        )
        for i in range(300)
    ]
    serial = [Masker().mask_record(r) for r in records]
    shared = Masker()
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(shared.mask_record, records))
    assert parallel == serial
    assert all(SECRET not in dump(r) for r in parallel)


SCAN_PIECES = (
    *["pass", "word", "wd", "w", "d", "o", "r", "p", "secret", "se", "ssion", "sn", "s", "token"],
    *["tok", "auth", "au", "api", "key", "-", "_", " ", "x", "A", "K", "credential", "private"],
    *["card", "number", "cvv", "cvc", "ccv", "cookie", "coo"],
    "\u0130",  # the characters that equal ASCII letters only under re.IGNORECASE
    "\u0131",
    "\u017f",
    "\u212a",
)
DEFAULT_WORDS = [
    *["password", "passwd", "pwd", "secret", "token", "auth", "credential", "cvv", "cvc", "ccv"],
    *["ssn", "session", "cookie"],
    *[f"{a}{sep}{b}" for a, b in [("api", "key"), ("private", "key"), ("card", "number")] for sep in "-_ "],
    *["apikey", "privatekey", "cardnumber"],
]


@pytest.mark.parametrize("word", DEFAULT_WORDS)
def test_fast_path_scan_finds_every_default_word(word: str) -> None:
    for variant in (word, word.upper(), word.title(), f"x{word.swapcase()}y"):
        assert FIELD_RE.search(variant)
        assert Masker()._may_match(variant, credentials=False)


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(SCAN_PIECES), max_size=12).map("".join))
def test_fast_path_scan_agrees_with_the_default_pattern(text: str) -> None:
    if masking_verdicts._FOLDS.search(text):  # these disable the fast path instead
        assert Masker()._may_match(text, credentials=False)
        return
    # the prefilter may say "maybe" more often than the rules match (the word rules such as
    # "pin" need their boundaries), never less
    if FIELD_RE.search(text):
        assert Masker()._may_match(text, credentials=False)


# --- properties over generated records ----------------------------------------------------

SENSITIVE_FIELDS = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "token",
    "accessToken",
    "refresh_token",
    "auth",
    "authorization",
    "api_key",
    "apiKey",
    "api-key",
    "api key",
    "credential",
    "credentials",
    "private_key",
    "privateKey",
    "card_number",
    "cardNumber",
    "cvv",
    "cvc",
    "ccv",
    "ssn",
    "session",
    "sessionId",
    "cookie",
]
SENSITIVE_HEADERS = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-session-id",
    "x-client-secret",
]


def random_case(names: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(names).flatmap(
        lambda n: st.tuples(*[st.sampled_from([c.lower(), c.upper()]) for c in n]).map("".join)
    )


def is_sensitive_name(name: str) -> bool:
    lower = name.lower()
    return bool(FIELD_RE.search(name) or HEADER_RE.search(name) or lower in masking.DEFAULT_HEADER_NAMES)


secrets = st.binary(min_size=8, max_size=8).map(lambda b: "S3CR3T" + b.hex())
safe_keys = st.text(alphabet=string.ascii_letters + "_-", min_size=1, max_size=10).filter(
    lambda k: not is_sensitive_name(k)
)
# strings starting with { or [ may be JSON sent as a string, which is masked inside
safe_text = st.text(max_size=20).filter(lambda s: "S3CR3T" not in s.upper() and not s.startswith(("{", "[")))
leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | safe_text
)
json_trees = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(safe_keys, children, max_size=4),
    max_leaves=25,
)
secret_values = secrets | secrets.map(lambda s: [1, s]) | secrets.map(lambda s: {"inner": s, "n": 1})


def dicts_in(node: object) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def without_sensitive(node: object) -> object:
    if isinstance(node, dict):
        return {k: without_sensitive(v) for k, v in node.items() if not FIELD_RE.search(k)}
    if isinstance(node, list):
        return [without_sensitive(v) for v in node]
    return node


@st.composite
def documents_with_secrets(draw: Callable[..., Any]) -> tuple[dict[str, Any], list[str]]:
    """A JSON object with secrets planted under sensitive names at random depths."""
    doc: dict[str, Any] = {"data": draw(json_trees)}
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        target = draw(st.sampled_from(dicts_in(doc)))
        target[draw(random_case(SENSITIVE_FIELDS))] = draw(secret_values)
    return doc, re.findall(r"S3CR3T[0-9a-f]{16}", json.dumps(doc))


PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(
    documents_with_secrets(),
    st.sampled_from(["application/json", "application/problem+json", "text/plain", None]),
    st.booleans(),
    st.sampled_from([None, 2]),
)
def test_property_json_secrets_never_survive_and_everything_else_does(
    doc_and_secrets: tuple[dict[str, Any], list[str]],
    content_type: str | None,
    ensure_ascii: bool,
    indent: int | None,
) -> None:
    doc, planted = doc_and_secrets
    text = json.dumps(doc, ensure_ascii=ensure_ascii, indent=indent)
    masked = Masker().mask_record(make_record(request_body=text, request_content_type=content_type))
    everything = dump(masked)
    assert planted
    assert not any(secret in everything for secret in planted)
    assert "S3CR3T" not in everything
    assert masked.request_body is not None
    assert without_sensitive(json.loads(masked.request_body)) == without_sensitive(doc)
    assert all(m.rule == "field:default" and m.path.startswith("request.body.") for m in masked.masked)


@PROPERTY_SETTINGS
@given(documents_with_secrets(), st.data())
def test_property_truncated_json_never_leaks(
    doc_and_secrets: tuple[dict[str, Any], list[str]], data: st.DataObject
) -> None:
    doc, _ = doc_and_secrets
    text = json.dumps(doc)
    cut = text[: data.draw(st.integers(min_value=1, max_value=len(text)))]
    out, _ = Masker().mask_body(cut, "application/json", "response.body")
    assert out is not None
    assert "S3CR3T" not in out


@PROPERTY_SETTINGS
@given(
    st.lists(st.tuples(safe_keys, safe_text), max_size=5),
    st.lists(st.tuples(random_case(SENSITIVE_FIELDS), secrets), min_size=1, max_size=3),
    st.lists(st.tuples(safe_keys, st.text(alphabet="abc XYZ019.-", max_size=15)), max_size=4),
    st.lists(st.tuples(random_case(SENSITIVE_HEADERS), secrets), min_size=1, max_size=3),
    st.randoms(use_true_random=False),
)
def test_property_headers_query_and_form_never_leak(
    safe_pairs: list[tuple[str, str]],
    secret_pairs: list[tuple[str, str]],
    safe_headers: list[tuple[str, str]],
    secret_headers: list[tuple[str, str]],
    rnd: Any,
) -> None:
    pairs = [(quote_plus(k), quote_plus(v)) for k, v in safe_pairs + secret_pairs]
    rnd.shuffle(pairs)
    encoded = "&".join(f"{k}={v}" for k, v in pairs)
    headers = [(k.lower(), v) for k, v in safe_headers]
    headers += [(k, f"{rnd.choice(['Bearer ', 'Basic ', ''])}{v}") for k, v in secret_headers]
    rnd.shuffle(headers)
    record = make_record(
        query=encoded,
        request_headers=tuple(headers),
        response_headers=tuple(headers),
        request_content_type="application/x-www-form-urlencoded",
        request_body=encoded,
    )
    masked = Masker().mask_record(record)
    everything = dump(masked)
    assert "S3CR3T" not in everything
    assert masked.url.split("?", 1)[1] == masked.query
    safe_pieces = {f"{k}={v}" for k, v in pairs if not FIELD_RE.search(unquote_plus(k))}
    assert safe_pieces <= set(masked.query.split("&"))
    assert masked.request_body is not None
    assert safe_pieces <= set(masked.request_body.split("&"))
    assert [h for h in masked.request_headers if not is_sensitive_name(h[0])] == [
        h for h in headers if not is_sensitive_name(h[0])
    ]
    assert {m.path for m in masked.masked} >= {f"request.headers.{k.lower()}" for k, _ in secret_headers}


@pytest.mark.parametrize(
    "number",
    ["123456789012345678901234567890", "-9223372036854775809", "18446744073709551616", "1e+20", "1.5e16"],
)
def test_masked_json_keeps_numbers_orjson_cannot_hold(number: str) -> None:
    # orjson (the [fast] extra, installed by the test extras) reads an integer beyond 64 bits
    # as a float; a masked body must still carry the number exactly as sent.
    from spanlytics import _json

    assert _json.BACKEND == "orjson"
    body = f'{{"id": {number}, "nested": {{"n": {number}}}, "password": "pw-1"}}'
    out, masks = Masker().mask_body(body, "application/json", "request.body")
    assert out is not None and "pw-1" not in out
    assert json.loads(out) == {**json.loads(body), "password": "[masked]"}
    assert [m.path for m in masks] == ["request.body.password"]


def test_masked_json_with_nan_and_lone_surrogate_falls_back_to_the_standard_library() -> None:
    body = '{"ratio": NaN, "name": "\\ud800x", "token": "tok-1"}'
    out, masks = Masker().mask_body(body, "application/json", "response.body")
    assert out is not None and "tok-1" not in out and "NaN" in out and "\\ud800" in out
    assert [m.path for m in masks] == ["response.body.token"]
