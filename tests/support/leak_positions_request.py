"""Leak positions in the request line and headers: headers, the user agent, the consumer id,
the query string and form bodies (see :mod:`tests.support.leak_cases`)."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

from hypothesis import strategies as st

from tests.support.leak_cases import (
    CARD_FIELDS,
    FORM,
    INNOCENT_HEADERS,
    INNOCENT_NAMES,
    JWT_HEADERS,
    NEW_SENSITIVE_FIELDS,
    SENSITIVE_FIELDS,
    Spec,
    any_case,
    controls,
    hex_,
    iban,
    jwt_with,
    luhn_card,
    position,
    secret_token,
)

# --- headers -------------------------------------------------------------------------------


@position("header.authorization.bearer")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    return Spec(s, headers=(("Authorization", f"{draw(any_case('bearer'))} {s}"),))


@position("header.authorization.basic")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    creds = base64.b64encode(f"bob:{s}".encode()).decode()
    return Spec(s, headers=(("Authorization", f"Basic {creds}"),))


@position("header.authorization.other-scheme")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    value = draw(
        st.sampled_from(
            [
                f"Token {s}",
                f"token {s}",
                f"ApiKey {s}",
                f"Bot {s}",
                f"SSWS {s}",
                f'Digest username="bob", realm="api", response="{s}"',
                f"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/s3/aws4_request, "
                f"SignedHeaders=host, Signature={s}",
                s,  # a bare token, no scheme
            ]
        )
    )
    return Spec(s, headers=(("Authorization", value),))


@position("header.proxy-authorization")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    return Spec(
        s, headers=(("Proxy-Authorization", f"Basic {base64.b64encode(f'p:{s}'.encode()).decode()}"),)
    )


@position("header.x-api-key+consumer")
def _(draw: st.DrawFn) -> Spec:
    # also the consumer id: the run sets SPANLYTICS_CONSUMER_FROM=header:X-Api-Key
    s = secret_token(draw)
    return Spec(s, headers=((draw(any_case("X-Api-Key")), s),))


@position("consumer.invalid-id-warning")
def _(draw: st.DrawFn) -> Spec:
    # too long for a consumer id (128 characters): dropped with a warning, which must not quote it
    s = secret_token(draw)
    return Spec(s, headers=(("X-Api-Key", s + "x" * draw(st.sampled_from([120, 300]))),))


@position("header.cookie")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    name = draw(st.sampled_from(["sessionid", "theme_token", "sid", "remember"]))
    return Spec(s, headers=(("Cookie", f"lang=en; {name}={s}; theme=dark"),))


@position("header.innocent-name.jwt")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    name = draw(st.sampled_from(INNOCENT_HEADERS + JWT_HEADERS))
    return Spec(s, headers=((name, jwt_with(s)),))


@position("header.innocent-name.bearer")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    name = draw(st.sampled_from(INNOCENT_HEADERS))
    return Spec(s, headers=((name, f"Bearer {s}"),))


@position("user-agent")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    value = draw(
        st.sampled_from(
            [f"client/1.0 (token={s})", f"sdk/2.1 Bearer {s}", f"bot/1 {jwt_with(s)}", f"app/3 apikey:{s}"]
        )
    )
    return Spec(s, headers=(("User-Agent", value),))


# --- query ---------------------------------------------------------------------------------


@position("query.sensitive-name")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    name = draw(st.sampled_from(SENSITIVE_FIELDS).flatmap(any_case))
    return Spec(s, query=urlencode({name: s, "page": "2"}))


@position("query.semicolon-value")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    name = draw(st.sampled_from(["password", "token", "api_key"]))
    return Spec(s, query=f"{name}=abc;{s}&page=2")


@position("query.percent-encoded-name")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    name = draw(st.sampled_from(["%70assword", "pass%77ord", "api%5Fkey", "to%6Ben"]))
    return Spec(s, query=f"{name}={s}&page=2")


@position("query.new-sensitive-name")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    name = draw(st.sampled_from(NEW_SENSITIVE_FIELDS))
    return Spec(s, query=urlencode({name: s, "page": "2"}))


@position("query.card-number")
def _(draw: st.DrawFn) -> Spec:
    s = luhn_card(draw(hex_))
    return Spec(s, query=urlencode({draw(st.sampled_from(CARD_FIELDS)): s, "page": "2"}))


@position("query.iban")
def _(draw: st.DrawFn) -> Spec:
    s = iban(draw(hex_))
    return Spec(s, query=urlencode({draw(st.sampled_from(["iban", "IBAN", "bank_account"])): s}))


@position("query.innocent-name.jwt")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    return Spec(s, query=urlencode({draw(st.sampled_from(INNOCENT_NAMES)): jwt_with(s)}))


@position("query.innocent-name.bearer")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    return Spec(s, query=urlencode({draw(st.sampled_from(INNOCENT_NAMES)): f"Bearer {s}"}))


# --- form ----------------------------------------------------------------------------------


@position("form.sensitive-name")
def _(draw: st.DrawFn) -> Spec:
    s, keep = secret_token(draw), draw(controls)
    name = draw(st.sampled_from(SENSITIVE_FIELDS).flatmap(any_case))
    body = urlencode({"name": keep, name: s}).encode()
    return Spec(s, "POST", "/leak/echo", body=body, content_type=FORM, body_control=keep)


@position("form.semicolon-value")
def _(draw: st.DrawFn) -> Spec:
    s, keep = secret_token(draw), draw(controls)
    return Spec(s, "POST", "/leak/echo", body=f"name={keep}&password=abc;{s}".encode(), content_type=FORM)


@position("form.duplicate-key-empty-last")
def _(draw: st.DrawFn) -> Spec:
    s, keep = secret_token(draw), draw(controls)
    last = draw(st.sampled_from(["password=", "password", "password=&x=1"]))
    return Spec(s, "POST", "/leak/echo", body=f"name={keep}&password={s}&{last}".encode(), content_type=FORM)


@position("form.new-sensitive-name")
def _(draw: st.DrawFn) -> Spec:
    s, keep = secret_token(draw), draw(controls)
    name = draw(st.sampled_from(NEW_SENSITIVE_FIELDS))
    body = urlencode({"name": keep, name: s}).encode()
    return Spec(s, "POST", "/leak/echo", body=body, content_type=FORM, body_control=keep)


@position("form.card-number")
def _(draw: st.DrawFn) -> Spec:
    s, keep = luhn_card(draw(hex_)), draw(controls)
    body = urlencode({"name": keep, draw(st.sampled_from(CARD_FIELDS)): s, "exp": "12/29"}).encode()
    return Spec(s, "POST", "/leak/echo", body=body, content_type=FORM, body_control=keep)


@position("form.innocent-name.bearer-or-jwt")
def _(draw: st.DrawFn) -> Spec:
    s, keep = secret_token(draw), draw(controls)
    value = draw(st.sampled_from([f"Bearer {s}", jwt_with(s)]))
    body = urlencode({"name": keep, draw(st.sampled_from(INNOCENT_NAMES)): value}).encode()
    return Spec(s, "POST", "/leak/echo", body=body, content_type=FORM)


@position("form.multipart")
def _(draw: st.DrawFn) -> Spec:
    s, keep = secret_token(draw), draw(controls)
    b = "leakboundary7MA4YWxk"
    body = (
        f'--{b}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{keep}\r\n'
        f'--{b}\r\nContent-Disposition: form-data; name="password"\r\n\r\n{s}\r\n--{b}--\r\n'
    ).encode()
    return Spec(s, "POST", "/leak/echo", body=body, content_type=f"multipart/form-data; boundary={b}")
