"""Consumer sources that need no code: a request header, W3C baggage, a JWT claim, the
Basic-auth user (``SPANLYTICS_CONSUMER_FROM``, ``SPANLYTICS_CONSUMER_HEADER``), and the
pseudonyms they may be hashed into.

They read a finished request's raw captured headers on the background thread, before
masking (see :class:`~spanlytics.consumer.resolve.ConsumerResolver`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spanlytics._throttle import ThrottledLogger
from spanlytics.capture.options import is_callback_spec
from spanlytics.consumer.value import Consumer, make_consumer

_log = ThrottledLogger(logging.getLogger("spanlytics.consumer"))


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
            elif not is_callback_spec(spec):
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
