"""Who made the request: the ``Consumer`` value and the ways to identify it.

Sources, strongest first:

1. ``spanlytics.set_consumer(...)`` called by the app inside a handler;
2. the ``identify_consumer`` callback given to :func:`spanlytics.configure`;
3. request state: ``request.state.spanlytics_consumer`` (Starlette/FastAPI) or
   ``environ["spanlytics.consumer"]`` (WSGI/Flask);
4. a configured request header (``SPANLYTICS_CONSUMER_HEADER``, e.g. set by a gateway);
5. W3C baggage key ``spanlytics.consumer.id``;
6. ``enduser.id`` / ``user.id`` span attributes that the app or another library set.

``set_consumer`` also writes the plain span attributes ``spanlytics.consumer.id``, ``.name``
and ``.group`` on the server span; the other sources stay in spanlytics' side channel so that
they never change what the app's other exporters receive.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from spanlytics._throttle import ThrottledLogger

_log = ThrottledLogger(logging.getLogger("spanlytics.consumer"))

MAX_IDENTIFIER_LENGTH = 128
MAX_LABEL_LENGTH = 64
MAX_EMAIL_LENGTH = 254

ATTR_CONSUMER_ID = "spanlytics.consumer.id"
ATTR_CONSUMER_NAME = "spanlytics.consumer.name"
ATTR_CONSUMER_GROUP = "spanlytics.consumer.group"
BAGGAGE_CONSUMER_ID = "spanlytics.consumer.id"
STATE_KEY = "spanlytics_consumer"
ENVIRON_KEY = "spanlytics.consumer"

# Ranks of the sources: a stronger source overrides a weaker one on the same request.
RANK_SET_CONSUMER = 50
RANK_CALLBACK = 40
RANK_STATE = 30


@dataclass(frozen=True, slots=True)
class Consumer:
    """An API consumer: a stable identifier plus optional display fields.

    >>> Consumer("acme-prod", name="Acme Corp", group="enterprise")
    Consumer(identifier='acme-prod', name='Acme Corp', group='enterprise', email=None)
    """

    identifier: str
    name: str | None = None
    group: str | None = None
    email: str | None = None


def _clean_label(value: object, field: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        _log.warning(f"consumer.{field}.type", "consumer %s must be a string; dropped", field)
        return None
    text = value.strip()
    if not text:
        return None
    if len(text) > limit:
        _log.warning(
            f"consumer.{field}.length", "consumer %s longer than %d characters; dropped", field, limit
        )
        return None
    return text


def make_consumer(
    identifier: object,
    name: object = None,
    group: object = None,
    email: object = None,
) -> Consumer | None:
    """Validate raw values into a :class:`Consumer`, or ``None`` when the identifier is invalid.

    The identifier must be a non-empty string (an ``int`` is accepted and converted) of at
    most 128 characters after stripping; name and group at most 64. An invalid identifier
    drops the whole consumer, an invalid optional field drops only that field; both log a
    rate-limited warning that never contains the value.
    """
    if isinstance(identifier, int) and not isinstance(identifier, bool):
        identifier = str(identifier)
    if not isinstance(identifier, str):
        _log.warning("consumer.identifier.type", "consumer identifier must be a string; consumer dropped")
        return None
    ident = identifier.strip()
    if not ident:
        return None
    if len(ident) > MAX_IDENTIFIER_LENGTH:
        _log.warning(
            "consumer.identifier.length",
            "consumer identifier longer than %d characters; consumer dropped",
            MAX_IDENTIFIER_LENGTH,
        )
        return None
    clean_email = _clean_label(email, "email", MAX_EMAIL_LENGTH)
    if clean_email is not None and "@" not in clean_email:
        _log.warning("consumer.email.format", "consumer email is not an address; dropped")
        clean_email = None
    return Consumer(
        ident,
        _clean_label(name, "name", MAX_LABEL_LENGTH),
        _clean_label(group, "group", MAX_LABEL_LENGTH),
        clean_email,
    )


def coerce_consumer(value: object) -> Consumer | None:
    """Turn what a callback or request state holds into a Consumer.

    Accepts a :class:`Consumer`, an identifier (``str`` or ``int``), a mapping with
    ``identifier``/``id`` and optional ``name``, ``group``, ``email``, or ``None``.
    """
    if value is None or isinstance(value, Consumer):
        return value
    if isinstance(value, Mapping):
        raw: Mapping[str, Any] = value
        ident = raw.get("identifier", raw.get("id"))
        return make_consumer(ident, raw.get("name"), raw.get("group"), raw.get("email"))
    return make_consumer(value)


def set_consumer(
    identifier: str | int,
    name: str | None = None,
    group: str | None = None,
    email: str | None = None,
) -> None:
    """Identify the API consumer of the request being handled.

    Call it anywhere inside a handler: an async FastAPI endpoint or dependency, a sync
    endpoint running in the thread pool, a Flask view, or inside a nested span::

        @app.get("/orders")
        async def orders(user: User = Depends(current_user)):
            spanlytics.set_consumer(user.api_key_id, name=user.org_name, group=user.plan)

    It never raises: invalid values are dropped with a rate-limited warning.
    """
    try:
        consumer = make_consumer(identifier, name, group, email)
        if consumer is None:
            return
        from spanlytics.capture.state import current_capture

        capture = current_capture()
        span: trace.Span | None = None
        if capture is not None:
            capture.offer_consumer(consumer, RANK_SET_CONSUMER)
            span = capture.span
        if span is None or not span.is_recording():
            span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(ATTR_CONSUMER_ID, consumer.identifier)
            if consumer.name is not None:
                span.set_attribute(ATTR_CONSUMER_NAME, consumer.name)
            if consumer.group is not None:
                span.set_attribute(ATTR_CONSUMER_GROUP, consumer.group)
    except Exception as exc:  # never let analytics break the handler
        _log.failure("consumer.set", "set_consumer failed; request continues without a consumer", exc)


# --- identification without code (SPANLYTICS_CONSUMER_FROM) ----------------------------

_CALLBACK_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def jwt_claim(authorization: str | None, claim: str) -> str | None:
    """A claim from an ``Authorization: Bearer <JWT>`` header, **without verifying** the token.

    Use it only behind something that does verify it (your app or gateway): the point is to
    label analytics, not to authenticate. ``claim`` may be dotted for nested objects.
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2:
        return None
    try:
        payload: Any = json.loads(_b64url(token.split(".")[1]))
    except (ValueError, UnicodeDecodeError, RecursionError):  # the token is client-controlled
        return None
    for part in claim.split("."):
        if not isinstance(payload, dict):
            return None
        payload = payload.get(part)
    return str(payload) if isinstance(payload, str | int) and not isinstance(payload, bool) else None


def basic_auth_user(authorization: str | None) -> str | None:
    """The user name of an ``Authorization: Basic`` header (the password is never read)."""
    if not authorization:
        return None
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, _ = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    # RFC 7617 credentials are "user:password"; without a colon it is likely a bare API key.
    return user if colon and user else None


def hash_identifier(value: str, key: str | None = None) -> str:
    """A stable pseudonym for a raw identifier (API key, e-mail): 32 hex characters.

    With ``key`` (``SPANLYTICS_CONSUMER_HASH_KEY``) it is an HMAC-SHA-256, which a reader of
    the store cannot reverse by guessing likely inputs; without, a plain SHA-256.
    """
    if key:
        return hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()[:32]
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def NO_SENSITIVE_HEADERS(name: str) -> bool:
    """The default ``sensitive_header`` policy of :meth:`ConsumerSources.parse`: none."""
    return False


@dataclass(frozen=True)
class ConsumerSources:
    """The configured no-code sources, tried in order on a finished request's capture.

    Built from ``SPANLYTICS_CONSUMER_FROM`` (``header:<name>``, ``baggage``,
    ``jwt-claim:<claim>``, ``basic-auth-user``) and ``SPANLYTICS_CONSUMER_HEADER``. They run
    on the background thread, on the raw captured headers, before masking. With
    ``hash_ids`` the identifier is replaced by :func:`hash_identifier` of it; an identifier
    read from a header in ``hashed_headers`` always is (its raw value is a secret, such as
    an API key).

    >>> sources = ConsumerSources.parse(["header:X-Api-Key"], None, False,
    ...                                 sensitive_header=lambda name: "key" in name)
    >>> sources.resolve({"x-api-key": "k-123"}.get, None).identifier == hash_identifier("k-123")
    True
    """

    sources: tuple[tuple[str, str], ...] = (("baggage", ""),)
    hash_ids: bool = False
    hash_key: str | None = field(default=None, repr=False)
    hashed_headers: frozenset[str] = frozenset()

    @classmethod
    def parse(
        cls,
        specs: Sequence[str],
        consumer_header: str | None,
        hash_ids: bool,
        hash_key: str | None = None,
        *,
        sensitive_header: Callable[[str], bool] = NO_SENSITIVE_HEADERS,
    ) -> ConsumerSources:
        """``sensitive_header(name)`` says whether masking hides a header (the masker's
        :meth:`~spanlytics.masking.Masker.is_sensitive_header`): an identifier read from
        such a header is hashed even without ``hash_ids``."""
        sources: list[tuple[str, str]] = []
        if consumer_header:
            sources.append(("header", consumer_header.lower()))
        for spec in specs:
            kind, _, arg = spec.strip().partition(":")
            kind = kind.lower()
            if kind == "header" and arg.strip():
                sources.append(("header", arg.strip().lower()))
            elif kind == "jwt-claim" and arg.strip():
                sources.append(("jwt-claim", arg.strip()))
            elif kind in ("baggage", "basic-auth-user") and not arg:
                sources.append((kind, ""))
            elif not _CALLBACK_SPEC.match(spec.strip()):
                _log.warning("consumer.from", "ignoring unknown SPANLYTICS_CONSUMER_FROM entry %r", spec)
        if not specs:
            sources.append(("baggage", ""))
        hashed = frozenset(arg for kind, arg in sources if kind == "header" and sensitive_header(arg))
        return cls(tuple(dict.fromkeys(sources)), hash_ids, hash_key, hashed)

    def identifying_headers(self) -> tuple[str, ...]:
        """Request headers whose raw value becomes the identifier (to mask when hashing)."""
        names = [arg for kind, arg in self.sources if kind == "header"]
        if any(kind == "baggage" for kind, _ in self.sources):
            names.append("baggage")
        return tuple(names)

    def resolve(self, header: Callable[[str], str | None], baggage_value: str | None) -> Consumer | None:
        """The first source that yields an identifier; ``header`` looks up a raw request header."""
        for kind, arg in self.sources:
            if kind == "header":
                value = header(arg)
            elif kind == "baggage":
                value = baggage_value
            elif kind == "jwt-claim":
                value = jwt_claim(header("authorization"), arg)
            else:
                value = basic_auth_user(header("authorization"))
            if value and value.strip():
                raw = value.strip()
                hashed = self.hash_ids or (kind == "header" and arg in self.hashed_headers)
                return make_consumer(hash_identifier(raw, self.hash_key) if hashed else raw)
        return None


def load_callback(specs: Sequence[str]) -> Callable[[Any], object] | None:
    """The first ``module:function`` entry of ``SPANLYTICS_CONSUMER_FROM``, imported."""
    for raw_spec in specs:
        spec = raw_spec.strip()
        kind = spec.partition(":")[0].lower()
        if kind in ("header", "jwt-claim") or not _CALLBACK_SPEC.match(spec):
            continue
        module_name, _, attr = spec.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except Exception as exc:
            _log.failure("consumer.callback.load", f"cannot load consumer callback {spec}", exc)
            return None
        if callable(target):
            return target  # type: ignore[no-any-return]
        _log.warning("consumer.callback.type", "consumer callback %s is not callable", spec)
    return None
