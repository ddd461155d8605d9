"""The apitally destination's options (``apitally_*``, ``SPANLYTICS_APITALLY_*``): the hub, the
client id and environment, the sync interval and the client's request-logging switches
(same defaults as the ``apitally`` 0.x client)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import ClassVar

from spanlytics._setting_fields import parse_bool, setting
from spanlytics.destinations.options import DestinationOptions

DEFAULT_BASE_URL = "https://hub.apitally.io"
ENV_PATTERN = re.compile(r"^[\w-]{1,32}$")


def _uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise ValueError("expected a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6") from None


def _env(raw: str) -> str:
    if ENV_PATTERN.match(raw.strip()) is None:
        raise ValueError("expected 1-32 letters, digits, '_' or '-'")
    return raw.strip()


@dataclass(frozen=True)
class ApitallyOptions(DestinationOptions):
    """The hub and the client's request-logging configuration (same defaults), plus the sync
    interval: ``None`` is the client's timing, 10 s during the first hour, then 60 s."""

    name: ClassVar[str] = "apitally"
    required: ClassVar[str | None] = "client_id"

    client_id: str | None = setting(None, _uuid)
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
        return problems
