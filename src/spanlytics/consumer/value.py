"""The ``Consumer`` value, its validation, and the names consumers travel under.

This module sits at the ground: it imports nothing of spanlytics but the throttled logger,
so every stage (and the ``RequestRecord`` value) can use it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
"""Where an ASGI app leaves its consumer: ``request.state.spanlytics_consumer``."""
ENVIRON_KEY = "spanlytics.consumer"
"""Where a WSGI app leaves its consumer: ``environ["spanlytics.consumer"]`` (``STATE_KEY``
is accepted there too)."""


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
