"""Apitally destination. With a write token (``SPANLYTICS_APITALLY_WRITE_TOKEN``) it speaks
Apitally 1.x, OpenTelemetry's OTLP: see :mod:`.otlp`. With a client id alone it speaks the
0.x hub protocol, aggregated metrics and request logs as the ``apitally`` 0.x client sends
them to its hub (``{base}/v2/{client_id}/{env}``)::

    POST /startup       once per process: instance and message uuids, routes, versions, client
    POST /sync          every 10 s in the first hour, then every 60 s: requests aggregated by
                        (consumer, method, route, status) with size sums and histograms,
                        validation errors, server errors, consumers, CPU % and RSS
    POST /log?uuid=...  request-log items as gzip-compressed NDJSON, one file per upload

Aggregation runs on spanlytics' background worker from masked records; the request path
is unchanged. Differences from the official client, on purpose:

* no silent drop above ~100 requests/s (it buffers 100 log items per second); log files are
  bounded in size and handed to :mod:`spanlytics.delivery.sender` (retries, spool, Retry-After);
* records are masked by spanlytics' rules first (``api_key`` query parameters, camelCase
  fields such as ``cardNumber``, tokens in free text), then the client's include options;
* route templates use one syntax for every framework (``/items/{item_id}``), in the
  startup paths and the counts alike; response times run to the last byte sent;
* the health/probe exclusions (``SPANLYTICS_EXCLUDE_*``) keep those requests out of the
  counts as well as the log;
* forked workers start with empty aggregates and their own instance uuid;
* 500 responses made by Starlette's error handler are seen with their size and headers,
  and validation errors are counted for Flask apps that answer 422 in FastAPI's shape too.

Modules: ``options`` (``apitally_*`` settings), ``aggregation`` (sync data), ``request_log``
(log items and files), ``hub`` (the destination: startup, sync and log, the instance slot);
for 1.x ``otlp`` (the destination and its transport), ``otlp_spans``, ``otlp_metrics``,
``otlp_events`` (the encoders) and ``otlp_wire`` (the protobuf envelope).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from spanlytics.destinations.apitally.options import DEFAULT_BASE_URL, DEFAULT_OTLP_ENDPOINT, ApitallyOptions

if TYPE_CHECKING:
    from spanlytics.config import Settings
    from spanlytics.destinations import Destination
    from spanlytics.destinations.apitally.aggregation import (
        Aggregator,
        exception_type,
        response_time_bucket,
        truncated_message,
        truncated_traceback,
    )
    from spanlytics.destinations.apitally.hub import ApitallyDestination, InstanceSlot
    from spanlytics.destinations.apitally.request_log import (
        MAX_LOG_FILE_BYTES,
        LogFile,
        RequestLogEncoder,
        decode_log,
    )

_logger = logging.getLogger("spanlytics.apitally")

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_OTLP_ENDPOINT",
    "MAX_LOG_FILE_BYTES",
    "Aggregator",
    "ApitallyDestination",
    "ApitallyOptions",
    "InstanceSlot",
    "LogFile",
    "RequestLogEncoder",
    "build_apitally",
    "decode_log",
    "exception_type",
    "response_time_bucket",
    "truncated_message",
    "truncated_traceback",
]


MISSING_PROTOBUF = (
    "the apitally destination needs opentelemetry-proto for a write token: "
    "pip install 'spanlytics[apitally]'; it is not used"
)


def build_apitally(settings: Settings, options: ApitallyOptions) -> Destination:
    """The registry's factory: a write token speaks 1.x (OTLP), a client id alone the 0.x hub.
    Their modules load when the destination is built."""
    if options.protocol == "0.x":
        from spanlytics.destinations.apitally import hub

        return hub.build_apitally(settings, options)
    if options.client_id:
        _logger.warning(
            "spanlytics apitally: both SPANLYTICS_APITALLY_WRITE_TOKEN and SPANLYTICS_APITALLY_CLIENT_ID "
            "are set; the write token wins (Apitally 1.x, OTLP) and the client id is ignored"
        )
    try:
        from spanlytics.destinations.apitally import otlp
    except ImportError:  # opentelemetry-proto (and protobuf) are the extra's
        from spanlytics.destinations.postgres.store import UnavailableDestination

        _logger.warning(MISSING_PROTOBUF)
        return UnavailableDestination(ApitallyOptions.name)
    return otlp.build_apitally_otlp(settings, options)


def __getattr__(name: str) -> object:
    """The aggregation, request-log and hub names, imported on first use: every process
    imports this package for its options, few build the destination (tens of ms of imports)."""
    missing = AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in __all__:  # (a submodule not imported yet: the import system then loads it)
        raise missing
    from spanlytics.destinations.apitally import aggregation, hub, request_log

    for module in (aggregation, request_log, hub):
        if name in vars(module):
            return vars(module)[name]
    raise missing
