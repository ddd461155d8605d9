"""What a destination's HTTP answer means for the batch it was sent: the sender's policy.

    outcome, wait_s, dropped = judge_answer("readme", settings, url, response)
    # ("retry", 30.0, None) for a 503 with "Retry-After: 30"; ("rejected", None, "redirected")
    # for a 302; ("pause", None, None) for a 401 (a bad key: stop hammering the service)

* 2xx: ``sent``.
* 3xx: the batch is dropped (``redirected``): deliveries never follow a redirect, since the
  POST would arrive as a GET without its body; the error names the host it points to.
* 408, 429, 5xx: ``retry``, after ``Retry-After`` when the answer has one.
* ``settings.pause_statuses`` (401, 403, 404 by default): ``pause`` the destination.
* Any other 4xx: the batch is dropped (``rejected``); it would fail the same way again.

Logs name the destination, the status and hosts, never a path, query, user or payload.
"""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime
from typing import Literal
from urllib.parse import urljoin

import requests

from spanlytics._throttle import ThrottledLogger
from spanlytics.delivery.settings import SenderSettings, host_of

__all__ = ["MAX_RETRY_AFTER_S", "RETRY_STATUSES", "Outcome", "judge_answer", "retry_after_s"]

_log = ThrottledLogger(logging.getLogger("spanlytics.delivery"))

Outcome = Literal["sent", "rejected", "retry", "pause"]

RETRY_STATUSES = frozenset({408, 429})
MAX_RETRY_AFTER_S = 600.0


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(when - (time.time() if now is None else now), 0.0), MAX_RETRY_AFTER_S)


def judge_answer(
    name: str, settings: SenderSettings, url: str, response: requests.Response
) -> tuple[Outcome, float | None, str | None]:
    """``(outcome, seconds to wait, drop reason)`` for ``response`` to a POST to ``url``."""
    status = response.status_code
    if 200 <= status < 300:
        return "sent", None, None
    if 300 <= status < 400:
        location = response.headers.get("Location")
        _log.error(
            f"send.redirect.{name}.{status}",
            "spanlytics %s: %s answered HTTP %d, a redirect to %s; deliveries never follow "
            "redirects (the POST would arrive as a GET without its body): configure the "
            "final URL. Batch dropped.",
            name,
            host_of(settings.base_url),
            status,
            host_of(urljoin(url, location)) if location else "no Location",
        )
        return "rejected", None, "redirected"
    if status in RETRY_STATUSES or status >= 500:
        _log.warning(f"send.status.{name}", "spanlytics %s: HTTP %d; will retry", name, status)
        return "retry", retry_after_s(response.headers.get("Retry-After")), None
    if status in settings.pause_statuses:
        _log.error(
            f"send.pause.{name}.{status}",
            "spanlytics %s: HTTP %d (%s): check the API key / client id; pausing delivery for %.0fs",
            name,
            status,
            response.reason or "",
            settings.pause_s,
        )
        return "pause", None, None
    _log.warning(
        f"send.rejected.{name}.{status}",
        "spanlytics %s: HTTP %d (%s); batch dropped",
        name,
        status,
        (response.reason or "")[:80],
    )
    return "rejected", None, "rejected"
