"""Requests with a secret in every position issue 12 lists, as hypothesis strategies.

Each :class:`LeakCase` carries one unique secret. Token secrets are ``s3cr3t`` + a five-digit
serial + hex, so a scanner finds them (and the case they belong to) in any byte string, even
when cut short; card numbers are Luhn-valid digits and IBANs are German-shaped, each unique by
its serial. Every case also carries an innocent ``control`` value sent as ``?ref=...``, and
some an innocent ``body_control`` inside the body: a destination that drops everything cannot
pass. ``app_raises`` marks cases whose secret the app itself puts into an exception (the
server's own error log then legitimately shows it; spanlytics' output must not).

The positions (``LeakCase.position``) are stable names used in failure reports, grouped by
prefix: ``header.*``, ``user-agent.*``, ``consumer.*``, ``query.*``, ``form.*``, ``json.*``,
``text.*``, ``charset.*``, ``exception.*``, ``echo.*``, ``response.*``.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from hypothesis import strategies as st

FRAMEWORKS = ("fastapi", "flask")
DEFAULT_MAX_BODY_BYTES = 64 * 1024  # SPANLYTICS_MAX_BODY_BYTES' default
MARKER = "s3cr3t"
_serials = itertools.count(1)
_serial_lock = threading.Lock()


def _next_serial() -> int:
    with _serial_lock:
        return next(_serials) % 100_000


@dataclass(frozen=True)
class LeakCase:
    position: str
    framework: str
    secret: str
    method: str
    path: str
    query: str = ""  # raw, already percent-encoded where needed (without ref=)
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    content_type: str | None = None
    control: str = ""
    body_control: str | None = None
    app_raises: bool = False
    note: str = field(default="", compare=False)

    @property
    def target(self) -> str:
        """Path and query as sent (``ref`` carries the innocent control value)."""
        query = f"ref={self.control}" + (f"&{self.query}" if self.query else "")
        return f"{self.path}?{query}"

    def all_headers(self) -> list[tuple[str, str]]:
        headers = list(self.headers)
        names = {name.lower() for name, _ in headers}
        if "user-agent" not in names:
            headers.append(("User-Agent", "leak-test/1.0"))
        if self.content_type is not None and "content-type" not in names:
            headers.append(("Content-Type", self.content_type))
        return headers


# --- secrets -----------------------------------------------------------------------------

hex_ = st.text("0123456789abcdef", min_size=12, max_size=12)


def token_secret(tail: str) -> str:
    return f"{MARKER}{_next_serial():05d}{tail}"


def luhn_card(tail: str) -> str:
    """A 16-digit Visa-shaped number passing the Luhn check, unique by its serial."""
    digits = f"4{_next_serial():05d}{int(tail[:8], 16) % 10**9:09d}"
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return digits + str((10 - total % 10) % 10)


def iban(tail: str) -> str:
    return f"DE89{_next_serial():05d}{int(tail[:10], 16) % 10**13:013d}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_with(secret: str) -> str:
    """A JWT whose payload (``jti``) and signature both carry the secret."""
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    payload = _b64url(json.dumps({"sub": "user-42", "jti": secret}).encode())
    return f"{header}.{payload}.{secret}_sig"


# --- building blocks -----------------------------------------------------------------------


def any_case(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(name, flips, strict=True))
    )


controls = st.builds(lambda h: f"keep{h}", st.text("0123456789abcdef", min_size=10, max_size=10))

# field names that the defaults cover today (README) and those issue 12 (item 8) says they must
SENSITIVE_FIELDS = ("password", "passwd", "api_key", "apiKey", "access_token", "client_secret", "ssn")
NEW_SENSITIVE_FIELDS = (
    "api.key",  # README: "api key (any separator)"
    "Api.Key",
    "api key",
    "x-api.key",
    "otp",  # one-time codes and PINs
    "pin",
    "mfa_code",
    "totp",
    "one_time_code",
    "verification_code",
    "X-Amz-Signature",  # pre-signed URL signatures
    "Signature",
    "sig",
    "iban",  # bank accounts
    "account_number",
    "bank_account",
)
CARD_FIELDS = ("card", "cc", "ccnum", "cc_number", "pan", "credit_card", "creditCardNumber", "card_no")
INNOCENT_NAMES = ("q", "data", "state", "next", "value", "info", "ctx")
INNOCENT_HEADERS = ("X-Request-Context", "X-Client-Data", "X-Upstream", "X-Debug-Info", "X-Forwarded-Client")
JWT_HEADERS = (
    "X-Amzn-Oidc-Data",
    "X-Goog-Iap-Jwt-Assertion",
    "Cf-Access-Jwt-Assertion",
    "X-Ms-Client-Principal",
)


@dataclass(frozen=True)
class Spec:
    """What a position contributes to a request; the framework and control are added later."""

    secret: str
    method: str = "GET"
    path: str = "/leak/ok"
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    content_type: str | None = None
    body_control: str | None = None
    app_raises: bool = False
    note: str = ""


PositionStrategy = Callable[[st.DrawFn], Spec]
POSITIONS: dict[str, PositionStrategy] = {}


def position(name: str) -> Callable[[PositionStrategy], PositionStrategy]:
    def register(fn: PositionStrategy) -> PositionStrategy:
        POSITIONS[name] = fn
        return fn

    return register


def _secret(draw: st.DrawFn) -> str:
    return token_secret(draw(hex_))


def _json_body(value: object) -> bytes:
    return json.dumps(value).encode()


# --- headers -------------------------------------------------------------------------------


@position("header.authorization.bearer")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    return Spec(s, headers=(("Authorization", f"{draw(any_case('bearer'))} {s}"),))


@position("header.authorization.basic")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    creds = base64.b64encode(f"bob:{s}".encode()).decode()
    return Spec(s, headers=(("Authorization", f"Basic {creds}"),))


@position("header.authorization.other-scheme")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
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
    s = _secret(draw)
    return Spec(
        s, headers=(("Proxy-Authorization", f"Basic {base64.b64encode(f'p:{s}'.encode()).decode()}"),)
    )


@position("header.x-api-key+consumer")
def _(draw: st.DrawFn) -> Spec:
    # also the consumer id: the run sets SPANLYTICS_CONSUMER_FROM=header:X-Api-Key
    s = _secret(draw)
    return Spec(s, headers=((draw(any_case("X-Api-Key")), s),))


@position("consumer.invalid-id-warning")
def _(draw: st.DrawFn) -> Spec:
    # too long for a consumer id (128 characters): dropped with a warning, which must not quote it
    s = _secret(draw)
    return Spec(s, headers=(("X-Api-Key", s + "x" * draw(st.sampled_from([120, 300]))),))


@position("header.cookie")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    name = draw(st.sampled_from(["sessionid", "theme_token", "sid", "remember"]))
    return Spec(s, headers=(("Cookie", f"lang=en; {name}={s}; theme=dark"),))


@position("header.innocent-name.jwt")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    name = draw(st.sampled_from(INNOCENT_HEADERS + JWT_HEADERS))
    return Spec(s, headers=((name, jwt_with(s)),))


@position("header.innocent-name.bearer")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    name = draw(st.sampled_from(INNOCENT_HEADERS))
    return Spec(s, headers=((name, f"Bearer {s}"),))


@position("user-agent")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    value = draw(
        st.sampled_from(
            [f"client/1.0 (token={s})", f"sdk/2.1 Bearer {s}", f"bot/1 {jwt_with(s)}", f"app/3 apikey:{s}"]
        )
    )
    return Spec(s, headers=(("User-Agent", value),))


# --- query ---------------------------------------------------------------------------------


@position("query.sensitive-name")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    name = draw(st.sampled_from(SENSITIVE_FIELDS).flatmap(any_case))
    return Spec(s, query=urlencode({name: s, "page": "2"}))


@position("query.semicolon-value")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    name = draw(st.sampled_from(["password", "token", "api_key"]))
    return Spec(s, query=f"{name}=abc;{s}&page=2")


@position("query.percent-encoded-name")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    name = draw(st.sampled_from(["%70assword", "pass%77ord", "api%5Fkey", "to%6Ben"]))
    return Spec(s, query=f"{name}={s}&page=2")


@position("query.new-sensitive-name")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
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
    s = _secret(draw)
    return Spec(s, query=urlencode({draw(st.sampled_from(INNOCENT_NAMES)): jwt_with(s)}))


@position("query.innocent-name.bearer")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    return Spec(s, query=urlencode({draw(st.sampled_from(INNOCENT_NAMES)): f"Bearer {s}"}))


# --- form ----------------------------------------------------------------------------------

FORM = "application/x-www-form-urlencoded"


@position("form.sensitive-name")
def _(draw: st.DrawFn) -> Spec:
    s, keep = _secret(draw), draw(controls)
    name = draw(st.sampled_from(SENSITIVE_FIELDS).flatmap(any_case))
    body = urlencode({"name": keep, name: s}).encode()
    return Spec(s, "POST", "/leak/echo", body=body, content_type=FORM, body_control=keep)


@position("form.semicolon-value")
def _(draw: st.DrawFn) -> Spec:
    s, keep = _secret(draw), draw(controls)
    return Spec(s, "POST", "/leak/echo", body=f"name={keep}&password=abc;{s}".encode(), content_type=FORM)


@position("form.duplicate-key-empty-last")
def _(draw: st.DrawFn) -> Spec:
    s, keep = _secret(draw), draw(controls)
    last = draw(st.sampled_from(["password=", "password", "password=&x=1"]))
    return Spec(s, "POST", "/leak/echo", body=f"name={keep}&password={s}&{last}".encode(), content_type=FORM)


@position("form.new-sensitive-name")
def _(draw: st.DrawFn) -> Spec:
    s, keep = _secret(draw), draw(controls)
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
    s, keep = _secret(draw), draw(controls)
    value = draw(st.sampled_from([f"Bearer {s}", jwt_with(s)]))
    body = urlencode({"name": keep, draw(st.sampled_from(INNOCENT_NAMES)): value}).encode()
    return Spec(s, "POST", "/leak/echo", body=body, content_type=FORM)


@position("form.multipart")
def _(draw: st.DrawFn) -> Spec:
    s, keep = _secret(draw), draw(controls)
    b = "leakboundary7MA4YWxk"
    body = (
        f'--{b}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{keep}\r\n'
        f'--{b}\r\nContent-Disposition: form-data; name="password"\r\n\r\n{s}\r\n--{b}--\r\n'
    ).encode()
    return Spec(s, "POST", "/leak/echo", body=body, content_type=f"multipart/form-data; boundary={b}")


# --- JSON ----------------------------------------------------------------------------------

JSON = "application/json"


@position("json.sensitive-key-at-depth")
def _(draw: st.DrawFn) -> Spec:
    s, keep = _secret(draw), draw(controls)
    name = draw(st.sampled_from((*SENSITIVE_FIELDS, "credentials", "private_key")).flatmap(any_case))
    value = draw(st.sampled_from([s, {"v": s}, [s], [{"id": 1, "v": s}]]))  # a key's object is masked whole
    return Spec(
        s,
        "POST",
        "/leak/echo",
        body=_json_body(_at_depth(draw, keep, {name: value})),
        content_type=JSON,
        body_control=keep,
    )


@position("json.new-sensitive-key-at-depth")
def _(draw: st.DrawFn) -> Spec:
    s, keep = _secret(draw), draw(controls)
    name = draw(st.sampled_from(NEW_SENSITIVE_FIELDS))
    return Spec(
        s,
        "POST",
        "/leak/echo",
        body=_json_body(_at_depth(draw, keep, {name: s})),
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
    s, keep = _secret(draw), draw(controls)
    last = draw(st.sampled_from(["null", '""', "[]", "{}"]))
    inner = f'{{"password": "{s}", "password": {last}}}'
    if draw(st.booleans()):
        inner = f'{{"user": {inner}}}'
    body = f'{{"note": "{keep}", "data": {inner}}}'.encode()
    return Spec(s, "POST", "/leak/echo", body=body, content_type=JSON)


@position("json.lenient-syntax")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
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
    s = _secret(draw)
    depth = draw(st.sampled_from([1200, 5000]))
    body = "[" * depth + f'{{"password": "{s}"}}' + "]" * depth
    return Spec(s, "POST", "/leak/echo", body=body.encode(), content_type=JSON)


@position("body.cut-at-capture-cap")
def _(draw: st.DrawFn) -> Spec:
    # the capture keeps the first 64 KiB (the default cap): the cut falls inside the secret
    s = _secret(draw)
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
    s, keep = _secret(draw), draw(controls)
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
    return Spec(s, "POST", "/leak/echo", body=_json_body({"ref": keep, name: value}), content_type=JSON)


@position("json.string-value.other-scheme")
def _(draw: st.DrawFn) -> Spec:
    # issue 12 item 3: any scheme, not only bearer and basic
    s, keep = _secret(draw), draw(controls)
    value = draw(st.sampled_from([f"Token {s}", f"ApiKey {s}", f"Authorization: Token {s}"]))
    return Spec(s, "POST", "/leak/echo", body=_json_body({"ref": keep, "header": value}), content_type=JSON)


@position("json.string-value.url-userinfo")
def _(draw: st.DrawFn) -> Spec:
    # beyond the list, as common scrubbers do: a password in a URL's user info
    s, keep = _secret(draw), draw(controls)
    value = draw(
        st.sampled_from([f"postgres://bob:{s}@db.internal:5432/app", f"https://bob:{s}@api.example.com/"])
    )
    name = draw(st.sampled_from(["dsn", "url", "callback"]))
    return Spec(s, "POST", "/leak/echo", body=_json_body({"ref": keep, name: value}), content_type=JSON)


@position("json.string-value.graphql")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    query = draw(
        st.sampled_from(
            [
                f'mutation {{ login(username: "bob", password: "{s}") {{ token }} }}',
                f'mutation {{ createKey(input: {{apiKey: "{s}"}}) {{ id }} }}',
                f'{{ me(token: "{s}") {{ name }} }}',
            ]
        )
    )
    return Spec(
        s, "POST", "/leak/echo", body=_json_body({"query": query, "variables": {}}), content_type=JSON
    )


@position("json.card-number")
def _(draw: st.DrawFn) -> Spec:
    s, keep = luhn_card(draw(hex_)), draw(controls)
    body = _json_body({"name": keep, "payment": {draw(st.sampled_from(CARD_FIELDS)): s, "exp": "12/29"}})
    return Spec(s, "POST", "/leak/echo", body=body, content_type=JSON, body_control=keep)


@position("json.iban")
def _(draw: st.DrawFn) -> Spec:
    s, keep = iban(draw(hex_)), draw(controls)
    body = _json_body({"name": keep, "bank": {draw(st.sampled_from(["iban", "IBAN", "accountNumber"])): s}})
    return Spec(s, "POST", "/leak/echo", body=body, content_type=JSON, body_control=keep)


# --- free text, YAML, XML --------------------------------------------------------------------


@position("text.free-text")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
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
    s = _secret(draw)
    text = draw(
        st.sampled_from([f"login with password {s} failed", f"the token is {s}", f"bad password {s}"])
    )
    return Spec(s, "POST", "/leak/echo", body=text.encode(), content_type="text/plain")


@position("text.yaml")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
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
    s = _secret(draw)
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
    s = _secret(draw)
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
    s = _secret(draw)
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
    s = _secret(draw)
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
    s = _secret(draw)
    kind = draw(st.sampled_from(EXCEPTION_KINDS))
    return Spec(
        s,
        "POST",
        "/leak/boom",
        body=_json_body({"kind": kind, "password": s}),
        content_type=JSON,
        app_raises=True,
        note=kind,
    )


# --- echoes --------------------------------------------------------------------------------


@position("echo.validation-422")
def _(draw: st.DrawFn) -> Spec:
    # FastAPI's own 422 echoes "input"; the Flask app answers the same shape by hand
    s = _secret(draw)
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
    return Spec(s, "POST", "/leak/login", body=_json_body(body), content_type=JSON)


@position("echo.error-quotes-body")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    kind = draw(st.sampled_from(["json", "form"]))
    as_ = draw(st.sampled_from(["json", "text"]))
    if kind == "json":
        body, ctype = _json_body({"password": s, "user": "bob"}), JSON
    else:
        body, ctype = f"user=bob&password={s}".encode(), FORM
    return Spec(s, "POST", "/leak/reject", query=f"as={as_}", body=body, content_type=ctype)


@position("echo.error-quotes-header")
def _(draw: st.DrawFn) -> Spec:
    s = _secret(draw)
    return Spec(s, "POST", "/leak/echo-header", headers=(("X-Api-Key", s),), body=b"{}", content_type=JSON)


# --- response headers ------------------------------------------------------------------------


@position("response.location-oauth-code")
def _(draw: st.DrawFn) -> Spec:
    # the app redirects with ?code=<secret> (an OAuth code) and sets a session cookie
    s = _secret(draw)
    return Spec(s, "POST", "/leak/redirect", body=urlencode({"client_secret": s}).encode(), content_type=FORM)


@st.composite
def leak_case(draw: st.DrawFn, name: str, framework: str) -> LeakCase:
    spec = POSITIONS[name](draw)
    return LeakCase(
        position=name,
        framework=framework,
        secret=spec.secret,
        method=spec.method,
        path=spec.path,
        query=spec.query,
        headers=spec.headers,
        body=spec.body,
        content_type=spec.content_type,
        control=draw(controls) + framework[:2],
        body_control=spec.body_control,
        app_raises=spec.app_raises,
        note=spec.note,
    )


def leak_batches(frameworks: tuple[str, ...] = FRAMEWORKS) -> st.SearchStrategy[list[LeakCase]]:
    """One case per position and framework, in a drawn order."""
    return st.tuples(*(leak_case(name, fw) for name in POSITIONS for fw in frameworks)).flatmap(
        lambda cases: st.permutations(list(cases))
    )


__all__ = ["FRAMEWORKS", "MARKER", "POSITIONS", "LeakCase", "leak_batches"]
