"""``set_consumer``: the app names the consumer from inside a request handler."""

from __future__ import annotations

import logging

from opentelemetry import trace

from spanlytics._throttle import ThrottledLogger
from spanlytics.capture.store import current_capture
from spanlytics.consumer.value import (
    ATTR_CONSUMER_GROUP,
    ATTR_CONSUMER_ID,
    ATTR_CONSUMER_NAME,
    make_consumer,
)

_log = ThrottledLogger(logging.getLogger("spanlytics.consumer"))


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

    It never raises: invalid values are dropped with a rate-limited warning. It is the
    strongest source (see :mod:`spanlytics.consumer`), and it also writes the plain span
    attributes ``spanlytics.consumer.id``, ``.name`` and ``.group`` on the server span.
    """
    try:
        # validated here, not in the background: the values go onto the span as well
        consumer = make_consumer(identifier, name, group, email)
        if consumer is None:
            return
        capture = current_capture()
        span: trace.Span | None = None
        if capture is not None:
            capture.explicit_consumer = consumer  # the last valid call wins
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
