"""The apitally destination's options (``apitally_*``, ``SPANLYTICS_APITALLY_*``): the
credentials that choose the protocol (a write token: 1.x, OTLP; a client id: the 0.x hub), the
environment, the endpoints, the sync interval, the sample rate and the request-logging switches
(same defaults as the ``apitally`` clients)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import ClassVar

from spanlytics._setting_fields import parse_bool, setting
from spanlytics.destinations.options import DestinationOptions

DEFAULT_BASE_URL = "https://hub.apitally.io"
DEFAULT_OTLP_ENDPOINT = "https://otlp.apitally.io"
ENV_PATTERN = re.compile(r"^[\w-]{1,32}$")
WRITE_TOKEN_PATTERN = re.compile(r"^apt_[a-zA-Z0-9]{24}$")
WRITE_TOKEN_PROBLEM = "expected apt_ followed by 24 letters or digits, as Apitally shows it"


def _uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise ValueError("expected a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6") from None


def _write_token(raw: str) -> str:
    """The token, checked; the error names the expected form, never the value (a secret)."""
    if WRITE_TOKEN_PATTERN.match(raw.strip()) is None:
        raise ValueError(WRITE_TOKEN_PROBLEM)
    return raw.strip()


def _endpoint(raw: str) -> str:
    if not raw.strip().startswith(("http://", "https://")):
        raise ValueError("expected a URL starting with http:// or https://")
    return raw.strip()


SAMPLE_RATE_PROBLEM = "expected a number from 0 to 1"


def _sample_rate_problem(value: object) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    return None if ok else SAMPLE_RATE_PROBLEM  # a NaN fails the comparison too


def _sample_rate(raw: str) -> float:
    """0 keeps no request log (metrics only), 1 keeps every one: bounds of their own, since
    the core's float bounds are exclusive at the bottom (they are made for seconds)."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(SAMPLE_RATE_PROBLEM) from None
    if _sample_rate_problem(value) is not None:
        raise ValueError(SAMPLE_RATE_PROBLEM)
    return value


def _env(raw: str) -> str:
    if ENV_PATTERN.match(raw.strip()) is None:
        raise ValueError("expected 1-32 letters, digits, '_' or '-'")
    return raw.strip()


@dataclass(frozen=True)
class ApitallyOptions(DestinationOptions):
    """The credentials, the endpoints and the clients' request-logging configuration (same
    defaults), plus the 0.x sync interval: ``None`` is the client's timing, 10 s during the
    first hour, then 60 s.

    A ``write_token`` speaks Apitally 1.x (OTLP to ``otlp_endpoint``, request logs sampled at
    ``sample_rate``); a ``client_id`` alone speaks the 0.x hub at ``base_url``. With both, the
    write token wins and the client id is ignored, with a warning (:attr:`protocol`).
    """

    name: ClassVar[str] = "apitally"
    required: ClassVar[str | tuple[str, ...] | None] = ("write_token", "client_id")

    client_id: str | None = setting(None, _uuid)
    write_token: str | None = setting(None, _write_token, secret=True)
    otlp_endpoint: str = setting(DEFAULT_OTLP_ENDPOINT, _endpoint)
    sample_rate: float = setting(1.0, _sample_rate)
    env: str = setting("prod", _env)
    base_url: str = setting(DEFAULT_BASE_URL, str)
    # the timer waits this long: NaN, inf or 1e300 would stop it (OverflowError)
    sync_interval_s: float | None = setting(None, bounds=(0.0, 3600.0))
    request_logging: bool = setting(False, parse_bool)
    log_query_params: bool = setting(True, parse_bool)
    log_request_headers: bool = setting(False, parse_bool)
    log_request_body: bool = setting(False, parse_bool)
    log_response_headers: bool = setting(True, parse_bool)
    log_response_body: bool = setting(False, parse_bool)
    log_exception: bool = setting(True, parse_bool)

    def problems(self) -> dict[str, str | None]:
        problems = super().problems()
        if not isinstance(self.env, str) or ENV_PATTERN.match(self.env) is None:
            problems["env"] = "expected 1-32 letters, digits, '_' or '-'"
        if self.client_id is not None:
            try:
                uuid.UUID(self.client_id)
            except (TypeError, ValueError, AttributeError):
                problems["client_id"] = "expected a UUID"
        if self.write_token is not None and (
            not isinstance(self.write_token, str) or WRITE_TOKEN_PATTERN.match(self.write_token) is None
        ):
            problems["write_token"] = WRITE_TOKEN_PROBLEM
        if not isinstance(self.otlp_endpoint, str) or not self.otlp_endpoint.startswith(
            ("http://", "https://")
        ):
            problems["otlp_endpoint"] = "expected a URL starting with http:// or https://"
        problems["sample_rate"] = _sample_rate_problem(self.sample_rate)
        return problems

    @property
    def protocol(self) -> str | None:
        """``"1.x"`` with a write token, ``"0.x"`` with a client id alone, else None."""
        if self.write_token:
            return "1.x"
        return "0.x" if self.client_id else None
