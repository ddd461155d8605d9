"""What one destination's delivery is configured with, checked when it is built.

A value that would fail later (a header ``http.client`` cannot encode, a wait of 1e300 s that
overflows every timed wait) raises ``ValueError`` here, naming the setting and never a header
value, instead of stopping the sender's thread on its first batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from spanlytics.config import Settings

# RFC 9110 token characters: anything else in a header name is rejected by servers or proxies.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def header_problem(name: str, value: str) -> str | None:
    """Why a header would fail on the wire, naming the header and never the value (an
    Authorization value is a secret). http.client sends Latin-1 only and rejects line breaks."""
    if not _HEADER_NAME.match(name):
        return "a header name may only hold letters, digits and !#$%&'*+-.^_`|~"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return f"the value of header {name} has characters outside Latin-1; encode them (base64)"
    if any(c in value for c in "\r\n\0"):
        return f"the value of header {name} has a line break or a NUL character"
    return None


MAX_SECONDS = 365 * 24 * 3600.0
"""Any duration setting beyond this is a mistake (and 1e300 s overflows every timed wait)."""

_SECONDS = (
    "connect_timeout_s",
    "read_timeout_s",
    "spool_max_age_s",
    "backoff_initial_s",
    "backoff_max_s",
    "pause_s",
)


@dataclass(frozen=True)
class SenderSettings:
    """Transport settings of one destination. ``headers`` (auth) are never written to disk."""

    base_url: str
    headers: tuple[tuple[str, str], ...] = ()
    gzip: bool = False
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    max_queue_batches: int = 64
    max_queue_bytes: int = 32 * 1024 * 1024
    spool_dir: str | None = None
    spool_max_bytes: int = 100 * 1024 * 1024
    spool_max_age_s: float = 24 * 3600.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    pause_statuses: frozenset[int] = frozenset({401, 403, 404})
    pause_s: float = 300.0

    @classmethod
    def from_settings(
        cls, settings: Settings, base_url: str, headers: tuple[tuple[str, str], ...] = (), gzip: bool = False
    ) -> SenderSettings:
        """One remote destination's delivery settings: its URL (and headers) plus the core
        ``delivery_*`` and ``spool_*`` settings."""
        return cls(
            base_url=base_url.rstrip("/"),
            headers=headers,
            gzip=gzip,
            read_timeout_s=settings.delivery_timeout_s,
            max_queue_batches=settings.delivery_queue_batches,
            spool_dir=settings.spool_dir,
            spool_max_bytes=settings.spool_max_bytes,
            spool_max_age_s=settings.spool_max_age_s,
            backoff_max_s=settings.delivery_backoff_max_s,
        )

    def __post_init__(self) -> None:
        """Checked when the destination is built, so that no send can fail on them later."""
        problems = [problem for name, value in self.headers if (problem := header_problem(name, value))]
        for name in _SECONDS:
            problems += _seconds_problem(name, getattr(self, name))
        for name in ("max_queue_batches", "max_queue_bytes", "spool_max_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}: expected a whole number >= 1")
        if problems:
            raise ValueError(f"invalid delivery settings for {host_of(self.base_url)}: {'; '.join(problems)}")


def _seconds_problem(name: str, value: object) -> list[str]:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= MAX_SECONDS:
        return []  # a NaN fails the comparison too
    return [f"{name}: expected a number of seconds > 0 and <= {MAX_SECONDS:g}"]


def host_of(url: str | None) -> str:
    """The host (and port) of ``url``: never its user, password, path or query, which may
    carry credentials."""
    try:
        parts = urlsplit(url or "")
        host = parts.hostname or ""
        return f"{host}:{parts.port}" if host and parts.port else host or "an unnamed host"
    except ValueError:
        return "an unparsable host"
