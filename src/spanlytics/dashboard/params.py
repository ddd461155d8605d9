"""What a dashboard URL asks for: the time window and the request log's filters, read from
the query string and written back into links, so that every view can be shared by its URL.

* A window is a preset (``range=15m``, ``1h``, ``24h``, ``7d``; the default is ``1h``) ending
  now, or a custom one (``from=2026-12-01T10:00&to=2026-12-01T12:00``, UTC, what an HTML
  ``datetime-local`` input sends). Windows up to three hours are charted per minute, longer
  ones per hour.
* The request log's filters: ``method``, ``route`` (``unmatched=1``: no route matched),
  ``status`` (``404``, ``5xx``, or ``none`` for no response), ``consumer`` (``anonymous=1``:
  without one), ``min_ms`` and ``path`` (a substring). Invalid values raise
  :class:`ValueError` with a message for the person who typed them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from spanlytics.destinations.rollups import MINUTE_NS, NONE
from spanlytics.destinations.stores import RequestFilter

__all__ = ["PRESETS", "Window", "log_filter", "parse_cursor", "parse_window", "url"]

PRESETS = {"15m": 15 * 60, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
DEFAULT_PRESET = "1h"
MAX_CUSTOM_S = 400 * 86400
PER_MINUTE_UP_TO_S = 3 * 3600
_LOCAL_TIME = "%Y-%m-%dT%H:%M"
_METHOD = re.compile(r"[A-Z]{1,16}")
_STATUS = re.compile(r"([1-5])(?:xx|XX)|([1-5][0-9][0-9])|none")
MAX_TEXT = 300


@dataclass(frozen=True)
class Window:
    """``[since_ns, until_ns)``, and the query parameters that name it."""

    since_ns: int
    until_ns: int
    preset: str | None  # None: custom

    @property
    def per_hour(self) -> bool:
        return self.until_ns - self.since_ns > PER_MINUTE_UP_TO_S * 1_000_000_000

    @property
    def minutes(self) -> tuple[int, int]:
        """The minutes the charts cover: those the window touches."""
        return self.since_ns // MINUTE_NS, -(-self.until_ns // MINUTE_NS)

    @property
    def covered(self) -> tuple[int, int]:
        """The minutes of the charts' buckets, which the tables add up too (whole hours for a
        window charted per hour: read from the hour rollups, fast at any volume)."""
        start, end = self.minutes
        if self.per_hour:
            return start // 60 * 60, -(-end // 60) * 60
        return start, end

    @property
    def buckets(self) -> range:
        """The charts' buckets: minutes, or hours (those the window touches)."""
        start, end = self.minutes
        if self.per_hour:
            return range(start // 60, -(-end // 60))
        return range(start, end)

    def query(self) -> dict[str, str]:
        if self.preset is not None:
            return {"range": self.preset}
        return {"from": _local(self.since_ns), "to": _local(self.until_ns)}

    def describe(self) -> str:
        if self.preset is not None:
            return f"last {self.preset}"
        return f"{_local(self.since_ns).replace('T', ' ')} to {_local(self.until_ns).replace('T', ' ')} UTC"

    def covered_text(self) -> str:
        start, end = self.covered
        return f"{_local(start * MINUTE_NS).replace('T', ' ')} to {_local(end * MINUTE_NS)[11:]} UTC"

    @property
    def from_text(self) -> str:
        return _local(self.since_ns)

    @property
    def to_text(self) -> str:
        return _local(self.until_ns)


def _local(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime(_LOCAL_TIME)


def _parse_time(text: str, name: str) -> int:
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}: not a date and time like 2026-12-01T10:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def parse_window(params: Mapping[str, str], now_ns: int) -> Window:
    """The window a query string asks for (see the module docstring)."""
    if params.get("from") or params.get("to"):
        since = _parse_time(params.get("from", ""), "from")
        until = _parse_time(params["to"], "to") if params.get("to") else now_ns
        if until <= since:
            raise ValueError("the window ends before it starts")
        if until - since > MAX_CUSTOM_S * 1_000_000_000:
            raise ValueError("a window is at most 400 days long")
        return Window(since, until, None)
    preset = params.get("range") or DEFAULT_PRESET
    if preset not in PRESETS:
        raise ValueError(f"range: one of {', '.join(PRESETS)}")
    return Window(now_ns - PRESETS[preset] * 1_000_000_000, now_ns, preset)


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name}: at most {MAX_TEXT} characters")
    return value or None


def log_filter(params: Mapping[str, str], window: Window) -> RequestFilter:
    """The request log's filters (see the module docstring) within ``window``."""
    method = (params.get("method") or "").strip().upper() or None
    if method is not None and not _METHOD.fullmatch(method):
        raise ValueError("method: letters only, like GET")
    status = status_class = None
    status_text = (params.get("status") or "").strip()
    if status_text:
        match = _STATUS.fullmatch(status_text)
        if match is None:
            raise ValueError("status: a code like 404, a class like 5xx, or none")
        if match[1]:
            status_class = int(match[1])
        elif match[2]:
            status = int(match[2])
        else:
            status_class = 0
    min_ms = None
    if params.get("min_ms"):
        try:
            min_ms = float(params["min_ms"])
        except ValueError:
            raise ValueError("min_ms: a number of milliseconds") from None
        if not 0 <= min_ms < 1e12:
            raise ValueError("min_ms: a number of milliseconds")
    route = NONE if params.get("unmatched") == "1" else _text(params, "route")
    consumer = NONE if params.get("anonymous") == "1" else _text(params, "consumer")
    return RequestFilter(
        since_ns=window.since_ns,
        until_ns=window.until_ns,
        method=method,
        route=route,
        status=status,
        status_class=status_class,
        consumer_id=consumer,
        min_duration_ms=min_ms,
        path_contains=_text(params, "path"),
    )


def parse_cursor(text: str | None) -> tuple[int, str] | None:
    """A page cursor ``<start_time_ns>.<id>`` (the last row of the previous page)."""
    if not text:
        return None
    ns, dot, record_id = text.partition(".")
    if not dot or not ns.lstrip("-").isdigit() or len(ns) > 20 or not -(2**63) < int(ns) < 2**63 - 1:
        raise ValueError("before: not a page of this log")
    return int(ns), record_id


def url(path: str, params: Mapping[str, str | None]) -> str:
    """``path`` with the non-empty ``params`` as its query string (every value encoded)."""
    query = urlencode([(k, v) for k, v in params.items() if v not in (None, "")])
    return f"{path}?{query}" if query else path
