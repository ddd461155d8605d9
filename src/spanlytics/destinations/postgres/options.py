"""The postgres destination's options: ``postgres_url`` (``SPANLYTICS_POSTGRES_URL``), and
:func:`redact_url`, the one way a URL is shown anywhere (logs, errors, the spool's name).

>>> redact_url("postgresql://app:s3cret@db.internal:5432/api")
'postgresql://app:***@db.internal:5432/api'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from spanlytics._setting_fields import setting
from spanlytics.destinations.options import DestinationOptions

__all__ = ["PostgresOptions", "parse_postgres_url", "redact_url", "url_problem"]

SCHEMES = ("postgresql", "postgres")
_MASK = "***"
# user:password@ in the authority; the password runs to the last "@" before the path
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@]*):[^/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` parameter) as ``***``;
    works on malformed URLs too, since those are the ones that end up in error messages."""
    redacted = _USERINFO.sub(lambda m: f"{m.group(1)}:{_MASK}@", url.strip(), count=1)
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + _MASK, redacted)


def url_passwords(url: str) -> tuple[str, ...]:
    """The password ``url`` carries, as written and decoded (to scrub both from a driver's
    message); empty without one."""
    try:
        parts = urlsplit(url.strip())
        found = parts.password or dict(parse_qsl(parts.query)).get("password")
    except ValueError:
        match = _USERINFO.match(url.strip())
        found = url.strip()[len(match.group(1)) + 1 : match.end() - 1] if match else None
    return tuple({found, unquote(found)}) if found else ()


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a PostgreSQL URL (the message holds the URL redacted), None when it is."""
    expected = "expected postgresql://user:password@host:port/database"
    text = url.strip()
    if any(c.isspace() or ord(c) < 32 for c in text):
        return f"{expected}; it holds a space or a control character: {redact_url(text)}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number or out of range)
    except ValueError:
        return f"{expected}; the port is not a number from 1 to 65535: {redact_url(text)}"
    if parts.scheme not in SCHEMES:
        return f"{expected}; the scheme is not postgresql://: {redact_url(text)}"
    if parts.fragment:
        return f"{expected}; it has a #fragment: {redact_url(text)}"
    return None


def parse_postgres_url(raw: str) -> str | None:
    """The variable's parser: the URL, or ``ValueError`` saying what is wrong (password masked)."""
    text = raw.strip()
    if not text:
        return None
    problem = url_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


@dataclass(frozen=True)
class PostgresOptions(DestinationOptions):
    """Where the shared store is: ``postgresql://user:password@host:port/database`` (any
    libpq URL parameter works: ``?sslmode=require``, ``?options=-csearch_path%3Danalytics``).
    The URL is a secret: it stays out of ``repr`` and every message shows it redacted."""

    name: ClassVar[str] = "postgres"
    required: ClassVar[str | None] = "url"

    url: str | None = setting(None, parse_postgres_url, secret=True)

    def problems(self) -> dict[str, str | None]:
        problems = super().problems()
        if self.url is not None:
            problems["url"] = url_problem(self.url) if isinstance(self.url, str) else "expected a URL"
        return problems
