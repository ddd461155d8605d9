"""Connections to the PostgreSQL store and what their errors mean, for the writer, the
reader and the pruner alike. psycopg is imported here, when a connection is first opened.

* :func:`connect`: ``connect_timeout``, ``application_name=spanlytics``, TCP keepalives (a
  dead server is noticed in under half a minute instead of hanging the writer).
* :func:`error_outcome`: ``retry`` (the server is away, restarting, busy, a deadlock or a
  serialisation failure), ``pause`` (credentials, permissions, no such database: a person
  must act) or ``failed`` (anything else: this batch would fail again).
* :func:`describe_error`: one line for a log, never the password (scrubbed even from the
  driver's text) and no values of a record.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from spanlytics.destinations.postgres.options import redact_url, url_passwords

if TYPE_CHECKING:
    import psycopg

__all__ = ["MISSING_DRIVER", "connect", "describe_error", "error_outcome"]

MISSING_DRIVER = "the postgres destination needs psycopg: pip install 'spanlytics[postgres]'"

# SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_RETRY_CLASSES = ("08", "53", "57", "58", "40")  # connection, resources, operator, system, rollback
_RETRY_CODES = {"55P03", "55006", "25006"}  # lock not available, object in use, read-only (failover)
_PAUSE_CLASSES = ("28",)  # invalid authorization
_PAUSE_CODES = {"42501", "3D000", "3F000"}  # insufficient privilege, no database, no schema
# A failed connection carries no SQLSTATE in psycopg: its message tells what happened.
_PAUSE_TEXTS = (
    "password authentication failed",
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # database "x" / role "x" does not exist
    "permission denied",
    "no password supplied",
    "password is required",
)

Outcome = Literal["retry", "pause", "failed"]


def connect(url: str, connect_timeout_s: float = 3.0, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
    import psycopg

    return psycopg.connect(
        url,
        connect_timeout=max(1, math.ceil(connect_timeout_s)),
        application_name="spanlytics",
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
        autocommit=True,  # transactions are explicit: conn.transaction()
        **kwargs,
    )


def _sqlstate(exc: BaseException) -> str | None:
    state = getattr(exc, "sqlstate", None)
    return state if isinstance(state, str) else None


def error_outcome(exc: BaseException) -> Outcome:
    """What a failed write means for the batch (see the module)."""
    import psycopg

    state = _sqlstate(exc)
    if state is not None:
        if state in _PAUSE_CODES or state.startswith(_PAUSE_CLASSES):
            return "pause"
        if state in _RETRY_CODES or state.startswith(_RETRY_CLASSES):
            return "retry"
        return "failed"
    if isinstance(exc, psycopg.OperationalError):  # a connection that failed or broke
        text = str(exc).lower()
        return "pause" if any(t in text for t in _PAUSE_TEXTS) else "retry"
    if isinstance(exc, (psycopg.InterfaceError, OSError, TimeoutError)):
        return "retry"
    return "failed"


def describe_error(exc: BaseException, url: str) -> str:
    """``exc`` as one line for a log: its type, SQLSTATE and the first line of the
    server's message, with the password and the URL redacted."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # libpq's connection errors come as 'connection failed: ... FATAL:  <the reason>'
    text = next((line for line in reversed(lines) if "FATAL" in line), lines[0] if lines else "")
    text = text.replace(url, redact_url(url))
    for password in url_passwords(url):
        text = text.replace(password, "***")
    if len(text) > 200:
        text = text[:197] + "..."
    state = _sqlstate(exc)
    kind = type(exc).__name__ + (f" {state}" if state else "")
    return f"{kind}: {text}" if text else kind
