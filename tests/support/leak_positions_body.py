"""Leak positions in bodies and what the app makes of them: JSON, free text, YAML, XML,
charsets, the capture cap, exceptions, echoes and response headers (see
:mod:`tests.support.leak_cases`)."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

from hypothesis import strategies as st

from tests.support.leak_cases import (
    CARD_FIELDS,
    DEFAULT_MAX_BODY_BYTES,
    FORM,
    JSON,
    MARKER,
    NEW_SENSITIVE_FIELDS,
    SENSITIVE_FIELDS,
    Spec,
    any_case,
    controls,
    hex_,
    iban,
    json_body,
    jwt_with,
    luhn_card,
    position,
    secret_token,
)

# --- JSON ----------------------------------------------------------------------------------


@position("json.sensitive-key-at-depth")
def _(draw: st.DrawFn) -> Spec:
    s, keep = secret_token(draw), draw(controls)
    name = draw(st.sampled_from((*SENSITIVE_FIELDS, "credentials", "private_key")).flatmap(any_case))
    value = draw(st.sampled_from([s, {"v": s}, [s], [{"id": 1, "v": s}]]))  # a key's object is masked whole
    return Spec(
        s,
        "POST",
        "/leak/echo",
        body=json_body(_at_depth(draw, keep, {name: value})),
        content_type=JSON,
        body_control=keep,
    )


@position("json.new-sensitive-key-at-depth")
def _(draw: st.DrawFn) -> Spec:
    s, keep = secret_token(draw), draw(controls)
    name = draw(st.sampled_from(NEW_SENSITIVE_FIELDS))
    return Spec(
        s,
        "POST",
        "/leak/echo",
        body=json_body(_at_depth(draw, keep, {name: s})),
        content_type=JSON,
        body_control=keep,
    )


def _at_depth(draw: st.DrawFn, keep: str, value: object) -> object:
    """``value`` wrapped in 0-5 levels of objects and arrays, next to an innocent field."""
    for _ in range(draw(st.integers(0, 5))):
        wrap = draw(st.sampled_from(["obj", "arr", "arr-of-obj"]))
        value = {"inner": value} if wrap == "obj" else [1, value] if wrap == "arr" else [{"x": value}]
    return {"note": keep, "data": value}


@position("json.duplicate-key-empty-last")
def _(draw: st.DrawFn) -> Spec:
    s, keep = secret_token(draw), draw(controls)
    last = draw(st.sampled_from(["null", '""', "[]", "{}"]))
    inner = f'{{"password": "{s}", "password": {last}}}'
    if draw(st.booleans()):
        inner = f'{{"user": {inner}}}'
    body = f'{{"note": "{keep}", "data": {inner}}}'.encode()
    return Spec(s, "POST", "/leak/echo", body=body, content_type=JSON)


@position("json.lenient-syntax")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    body = draw(
        st.sampled_from(
            [
                f"{{'password': '{s}'}}",  # single-quoted
                f'{{password: "{s}"}}',  # unquoted key
                f'\ufeff{{"password": "{s}"}}',  # UTF-8 BOM
                f')]}}\',\n{{"password": "{s}"}}',  # anti-XSSI prefix
                f'{{"pass\\u0077ord": "{s}"}}',  # an escaped key
                f'{{"password": "{s}", }}',  # trailing comma
                f'/* c */ {{"password": "{s}"}}',  # a comment
                f'{{"n": NaN, "password": "{s}"}}',  # Python's json accepts NaN, strict parsers do not
                f'{{"password": "{s}", "note": "\\ud800"}}',  # a lone surrogate escape
                f'{{"n": 1{"0" * 400}, "password": "{s}"}}',  # an integer no float can hold
                f'{{"password": "{s}"}} {{"second": "document"}}',  # trailing data
            ]
        )
    )
    return Spec(s, "POST", "/leak/echo", body=body.encode(), content_type=JSON)


@position("json.deeply-nested")
def _(draw: st.DrawFn) -> Spec:
    # deeper than a recursive parser's stack: the masker must fail closed, not pass it through
    s = secret_token(draw)
    depth = draw(st.sampled_from([1200, 5000]))
    body = "[" * depth + f'{{"password": "{s}"}}' + "]" * depth
    return Spec(s, "POST", "/leak/echo", body=body.encode(), content_type=JSON)


@position("body.cut-at-capture-cap")
def _(draw: st.DrawFn) -> Spec:
    # the capture keeps the first 64 KiB (the default cap): the cut falls inside the secret
    s = secret_token(draw)
    cut = DEFAULT_MAX_BODY_BYTES - len(MARKER) - 5 - draw(st.integers(2, 8))  # after the serial
    kind = draw(st.sampled_from(["json", "form", "text"]))
    if kind == "json":
        head = '{"pad": "'
        tail = '", "password": "'
        body = head + "a" * (cut - len(head) - len(tail)) + tail + s + '"}'
        return Spec(s, "POST", "/leak/echo", body=body.encode(), content_type=JSON)
    if kind == "form":
        head, tail = "pad=", "&password="
        body = head + "a" * (cut - len(head) - len(tail)) + tail + s
        return Spec(s, "POST", "/leak/echo", body=body.encode(), content_type=FORM)
    head, tail = "log line\n", "\npassword: "
    body = head + "a" * (cut - len(head) - len(tail)) + tail + s + "\n"
    return Spec(s, "POST", "/leak/echo", body=body.encode(), content_type="text/plain")


@position("json.string-value.credentials")
def _(draw: st.DrawFn) -> Spec:
    s, keep = secret_token(draw), draw(controls)
    value = draw(
        st.sampled_from(
            [
                f"password={s}",
                f"user=bob&password={s}",
                f"Bearer {s}",
                f"Basic {base64.b64encode(f'bob:{s}'.encode()).decode()}",
                jwt_with(s),
            ]
        )
    )
    name = draw(st.sampled_from(["note", "message", "header", "comment"]))
    return Spec(s, "POST", "/leak/echo", body=json_body({"ref": keep, name: value}), content_type=JSON)


@position("json.string-value.other-scheme")
def _(draw: st.DrawFn) -> Spec:
    # issue 12 item 3: any scheme, not only bearer and basic
    s, keep = secret_token(draw), draw(controls)
    value = draw(st.sampled_from([f"Token {s}", f"ApiKey {s}", f"Authorization: Token {s}"]))
    return Spec(s, "POST", "/leak/echo", body=json_body({"ref": keep, "header": value}), content_type=JSON)


@position("json.string-value.url-userinfo")
def _(draw: st.DrawFn) -> Spec:
    # beyond the list, as common scrubbers do: a password in a URL's user info
    s, keep = secret_token(draw), draw(controls)
    value = draw(
        st.sampled_from([f"postgres://bob:{s}@db.internal:5432/app", f"https://bob:{s}@api.example.com/"])
    )
    name = draw(st.sampled_from(["dsn", "url", "callback"]))
    return Spec(s, "POST", "/leak/echo", body=json_body({"ref": keep, name: value}), content_type=JSON)


@position("json.string-value.graphql")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    query = draw(
        st.sampled_from(
            [
                f'mutation {{ login(username: "bob", password: "{s}") {{ token }} }}',
                f'mutation {{ createKey(input: {{apiKey: "{s}"}}) {{ id }} }}',
                f'{{ me(token: "{s}") {{ name }} }}',
            ]
        )
    )
    return Spec(s, "POST", "/leak/echo", body=json_body({"query": query, "variables": {}}), content_type=JSON)


@position("json.card-number")
def _(draw: st.DrawFn) -> Spec:
    s, keep = luhn_card(draw(hex_)), draw(controls)
    body = json_body({"name": keep, "payment": {draw(st.sampled_from(CARD_FIELDS)): s, "exp": "12/29"}})
    return Spec(s, "POST", "/leak/echo", body=body, content_type=JSON, body_control=keep)


@position("json.iban")
def _(draw: st.DrawFn) -> Spec:
    s, keep = iban(draw(hex_)), draw(controls)
    body = json_body({"name": keep, "bank": {draw(st.sampled_from(["iban", "IBAN", "accountNumber"])): s}})
    return Spec(s, "POST", "/leak/echo", body=body, content_type=JSON, body_control=keep)


# --- free text, YAML, XML --------------------------------------------------------------------


@position("text.free-text")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    text = draw(
        st.sampled_from(
            [
                f"Authorization: Token {s}",
                f"authorization: ApiKey {s}",
                f"password=abc,{s}",  # a value with a comma
                f"export API_KEY={s}",
                f"password = '{s}'",
            ]
        )
    )
    return Spec(s, "POST", "/leak/echo", body=text.encode(), content_type="text/plain")


@position("text.prose")
def _(draw: st.DrawFn) -> Spec:
    # the shape of "bad password hunter2": a sensitive word, then the value, no = or :
    s = secret_token(draw)
    text = draw(
        st.sampled_from([f"login with password {s} failed", f"the token is {s}", f"bad password {s}"])
    )
    return Spec(s, "POST", "/leak/echo", body=text.encode(), content_type="text/plain")


@position("text.yaml")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    text = draw(
        st.sampled_from(
            [
                f"user: bob\npassword: |\n  {s}\nrole: admin\n",
                f"user: bob\npassword: >-\n  {s}\n",
                f"credentials:\n  - name: db\n    password:\n      {s}\n",
                f"api_key: &k {s}\nother: *k\n",
            ]
        )
    )
    ctype = draw(st.sampled_from(["application/yaml", "text/yaml", "text/plain"]))
    return Spec(s, "POST", "/leak/echo", body=text.encode(), content_type=ctype)


@position("text.xml")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    text = draw(
        st.sampled_from(
            [
                f'<params><param name="user">bob</param><param name="password">{s}</param></params>',
                f"<login><user>bob</user><password>{s}</password></login>",
                f'<login><password type="plain">{s}</password></login>',
                f"<login><password><![CDATA[{s}]]></password></login>",
                f"<soap:Envelope><wsse:Password>{s}</wsse:Password></soap:Envelope>",
            ]
        )
    )
    ctype = draw(st.sampled_from(["application/xml", "text/xml", "application/soap+xml"]))
    return Spec(s, "POST", "/leak/echo", body=text.encode(), content_type=ctype)


@position("text.xml-attribute-value")
def _(draw: st.DrawFn) -> Spec:
    # beyond the list: the name and the value as attributes of one element
    s = secret_token(draw)
    text = draw(
        st.sampled_from(
            [
                f'<config><entry key="api_key" value="{s}"/></config>',
                f'<login user="bob" password="{s}"/>',
            ]
        )
    )
    return Spec(s, "POST", "/leak/echo", body=text.encode(), content_type="application/xml")


# --- charsets ------------------------------------------------------------------------------


@position("charset.declared-non-utf8")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    kind = draw(st.sampled_from(["json", "form", "text"]))
    text = {
        "json": f'{{"password": "{s}"}}',
        "form": f"password={s}",
        "text": f"password={s}",
    }[kind]
    charset = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32"]))
    base = {"json": JSON, "form": FORM, "text": "text/plain"}[kind]
    return Spec(s, "POST", "/leak/echo", body=text.encode(charset), content_type=f"{base}; charset={charset}")


@position("charset.undeclared-utf16-json")
def _(draw: st.DrawFn) -> Spec:
    # RFC 4627 / json.loads(bytes) detect UTF-16 and UTF-32 JSON without a charset parameter
    s = secret_token(draw)
    encoding = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32-le"]))
    return Spec(s, "POST", "/leak/echo", body=f'{{"password": "{s}"}}'.encode(encoding), content_type=JSON)


# --- exceptions ----------------------------------------------------------------------------

EXCEPTION_KINDS = (
    "bad-password",  # "bad password <s>": no = or :
    "token-for-user",  # "invalid token <s> for user bob"
    "dict-repr",  # "bad credentials {'password': '<s>'}"
    "chained",  # raised from a cause whose message holds the secret
    "keyerror",  # KeyError('<s>'): a lookup by the secret
    "auth-scheme",  # "Authorization Token <s> rejected"
)


@position("exception.message-and-trace")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    kind = draw(st.sampled_from(EXCEPTION_KINDS))
    return Spec(
        s,
        "POST",
        "/leak/boom",
        body=json_body({"kind": kind, "password": s}),
        content_type=JSON,
        app_raises=True,
        note=kind,
    )


# --- echoes --------------------------------------------------------------------------------


@position("echo.validation-422")
def _(draw: st.DrawFn) -> Spec:
    # FastAPI's own 422 echoes "input"; the Flask app answers the same shape by hand
    s = secret_token(draw)
    body = draw(
        st.sampled_from(
            [
                {"username": "bob", "password": s},  # password: max 8 characters
                {"username": "bob", "password": "ok", "pin": s},  # pin: an int
                {"username": "bob", "password": "ok", "api_key": [s]},  # api_key: a str
                f"Bearer {s}",  # not an object: the whole body is the input
            ]
        )
    )
    return Spec(s, "POST", "/leak/login", body=json_body(body), content_type=JSON)


@position("echo.error-quotes-body")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    kind = draw(st.sampled_from(["json", "form"]))
    as_ = draw(st.sampled_from(["json", "text"]))
    if kind == "json":
        body, ctype = json_body({"password": s, "user": "bob"}), JSON
    else:
        body, ctype = f"user=bob&password={s}".encode(), FORM
    return Spec(s, "POST", "/leak/reject", query=f"as={as_}", body=body, content_type=ctype)


@position("echo.error-quotes-header")
def _(draw: st.DrawFn) -> Spec:
    s = secret_token(draw)
    return Spec(s, "POST", "/leak/echo-header", headers=(("X-Api-Key", s),), body=b"{}", content_type=JSON)


# --- response headers ------------------------------------------------------------------------


@position("response.location-oauth-code")
def _(draw: st.DrawFn) -> Spec:
    # the app redirects with ?code=<secret> (an OAuth code) and sets a session cookie
    s = secret_token(draw)
    return Spec(s, "POST", "/leak/redirect", body=urlencode({"client_secret": s}).encode(), content_type=FORM)
