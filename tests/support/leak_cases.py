"""Requests with a secret in every position issue 12 lists, as hypothesis strategies.

Each :class:`LeakCase` carries one unique secret. Token secrets are ``s3cr3t`` + a five-digit
serial + hex, so a scanner finds them (and the case they belong to) in any byte string, even
when cut short; card numbers are Luhn-valid digits and IBANs are German-shaped, each unique by
its serial. Every case also carries an innocent ``control`` value sent as ``?ref=...``, and
some an innocent ``body_control`` inside the body: a destination that drops everything cannot
pass. ``app_raises`` marks cases whose secret the app itself puts into an exception (the
server's own error log then legitimately shows it; spanlytics' output must not).

The positions themselves (``LeakCase.position``, stable names used in failure reports) are
registered by ``leak_positions_request`` (headers, user agent, consumer, query, form) and
``leak_positions_body`` (bodies, exceptions, echoes, response headers), grouped by prefix:
``header.*``, ``user-agent``, ``consumer.*``, ``query.*``, ``form.*``, ``json.*``, ``body.*``,
``text.*``, ``charset.*``, ``exception.*``, ``echo.*``, ``response.*``.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

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


def secret_token(draw: st.DrawFn) -> str:
    """A fresh token secret (marker, serial, drawn hex)."""
    return token_secret(draw(hex_))


def json_body(value: object) -> bytes:
    return json.dumps(value).encode()


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


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


def selected_positions() -> list[str]:
    """Every position, or those starting with one of the comma-separated prefixes in
    ``LEAK_POSITIONS`` (to iterate on one class of fix: ``LEAK_POSITIONS=json.,text.``)."""
    # the catalogue registers itself on import (it imports this module's building blocks)
    from tests.support import leak_positions_body, leak_positions_request  # noqa: F401

    prefixes = tuple(p.strip() for p in os.environ.get("LEAK_POSITIONS", "").split(",") if p.strip())
    names = [name for name in POSITIONS if not prefixes or name.startswith(prefixes)]
    assert names, f"LEAK_POSITIONS={os.environ.get('LEAK_POSITIONS')!r} selects no position"
    return names


def leak_batches(frameworks: tuple[str, ...] = FRAMEWORKS) -> st.SearchStrategy[list[LeakCase]]:
    """One case per (selected) position and framework, in a drawn order."""
    names = selected_positions()
    return st.tuples(*(leak_case(name, fw) for name in names for fw in frameworks)).flatmap(
        lambda cases: st.permutations(list(cases))
    )


__all__ = ["FRAMEWORKS", "MARKER", "POSITIONS", "LeakCase", "leak_batches"]
