"""Who made the request: the ``Consumer`` value, ``set_consumer`` and the ways to identify it.

* :mod:`~spanlytics.consumer.value`: ``Consumer`` and its validation (the ground: it
  imports nothing above it);
* :mod:`~spanlytics.consumer.handler`: ``set_consumer``, called by the app in a handler;
* :mod:`~spanlytics.consumer.sources`: header, baggage, JWT claim and Basic-user sources;
* :mod:`~spanlytics.consumer.resolve`: ``ConsumerResolver``, the one place that decides a
  request's consumer, in the background (its docstring has the sources' order).
"""

from spanlytics.consumer.handler import set_consumer
from spanlytics.consumer.resolve import ConsumerResolver
from spanlytics.consumer.sources import (
    NO_SENSITIVE_HEADERS,
    ConsumerSources,
    basic_auth_user,
    hash_identifier,
    jwt_claim,
)
from spanlytics.consumer.value import BAGGAGE_CONSUMER_ID, Consumer, coerce_consumer, make_consumer

__all__ = [
    "BAGGAGE_CONSUMER_ID",
    "NO_SENSITIVE_HEADERS",
    "Consumer",
    "ConsumerResolver",
    "ConsumerSources",
    "basic_auth_user",
    "coerce_consumer",
    "hash_identifier",
    "jwt_claim",
    "make_consumer",
    "set_consumer",
]
