"""The one place where a request's consumer is decided, on the background thread.

Capture only records raw hints on the request path; :meth:`ConsumerResolver.resolve` turns
them, the configured no-code sources and the span's attributes into one :class:`Consumer`.
The first source that yields a valid consumer wins, strongest first:

1. ``spanlytics.set_consumer(...)`` (validated when called: it also sets span attributes);
2. what the ``identify_consumer`` callback returned;
3. the request state (``request.state.spanlytics_consumer``, ``environ["spanlytics.consumer"]``);
4. the configured sources, in their order (``SPANLYTICS_CONSUMER_HEADER``, then
   ``SPANLYTICS_CONSUMER_FROM``: headers, JWT claim, Basic user, baggage); baggage alone
   when none is configured;
5. the span's ``spanlytics.consumer.id`` / ``.name`` / ``.group`` attributes (set by
   ``set_consumer`` outside a captured request, or by the app itself);
6. ``enduser.id``, then ``user.id``.

Sources 1 to 4 need the captured request: a span without one is identified by 5 and 6 only.

>>> resolver = ConsumerResolver()
>>> resolver.resolve(None, {"enduser.id": "user-9"})
Consumer(identifier='user-9', name=None, group=None, email=None)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spanlytics._throttle import ThrottledLogger
from spanlytics.consumer.sources import NO_SENSITIVE_HEADERS, ConsumerSources
from spanlytics.consumer.value import (
    ATTR_CONSUMER_GROUP,
    ATTR_CONSUMER_ID,
    ATTR_CONSUMER_NAME,
    Consumer,
    coerce_consumer,
    make_consumer,
)

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

    from spanlytics.capture.snapshot import CapturedRequest
    from spanlytics.config import Settings

_log = ThrottledLogger(logging.getLogger("spanlytics.capture"))


def span_consumer(attributes: Mapping[str, AttributeValue] | None) -> Consumer | None:
    """The consumer that a span's own attributes name, if any (sources 5 and 6)."""
    if not attributes:
        return None
    ident = attributes.get(ATTR_CONSUMER_ID)
    if ident is not None:
        name = attributes.get(ATTR_CONSUMER_NAME)
        group = attributes.get(ATTR_CONSUMER_GROUP)
        return make_consumer(
            str(ident), None if name is None else str(name), None if group is None else str(group)
        )
    ident = attributes.get("enduser.id", attributes.get("user.id"))
    return make_consumer(str(ident)) if ident is not None else None


def _coerce(value: object, source: str) -> Consumer | None:
    """A raw hint from app code as a valid Consumer, or None (with a warning for junk)."""
    if value is None:
        return None
    try:
        return coerce_consumer(value)
    except Exception as exc:  # a mapping of the app's that raises on .get(): no consumer
        _log.failure(f"consumer.{source}", f"could not read the consumer from the {source}", exc)
        return None


def hinted_consumer(captured: CapturedRequest) -> Consumer | None:
    """The consumer the app's code named for a captured request (sources 1 to 3), if any."""
    explicit = captured.explicit_consumer
    if isinstance(explicit, Consumer):  # set_consumer validated it already
        return explicit
    return _coerce(captured.callback_consumer, "callback") or _coerce(captured.state_consumer, "state")


@dataclass(frozen=True)
class ConsumerResolver:
    """Decides each request's consumer from its captured hints, the configured sources and
    its span's attributes (see the module's docstring for the order)."""

    sources: ConsumerSources = field(default_factory=ConsumerSources)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, sensitive_header: Callable[[str], bool]
    ) -> ConsumerResolver:
        """The resolver ``settings`` ask for.

        ``sensitive_header(name)`` says whether masking hides a request header (pass the
        pipeline's :meth:`Masker.is_sensitive_header <spanlytics.masking.Masker.is_sensitive_header>`;
        masking sits above this stage): an identifier read from such a header (``X-Api-Key``)
        is hashed even without ``consumer_hash``. With ``consumer_hash`` every one is.
        """
        return cls(
            ConsumerSources.parse(
                settings.consumer_from,
                settings.consumer_header,
                settings.consumer_hash,
                settings.consumer_hash_key,
                sensitive_header=NO_SENSITIVE_HEADERS if settings.consumer_hash else sensitive_header,
            )
        )

    def resolve(
        self, captured: CapturedRequest | None, span_attributes: Mapping[str, AttributeValue] | None
    ) -> Consumer | None:
        """The request's consumer, or None when no source names a valid one."""
        if captured is not None:
            consumer = hinted_consumer(captured) or self.sources.resolve(
                captured.header, captured.baggage_consumer
            )
            if consumer is not None:
                return consumer
        return span_consumer(span_attributes)
