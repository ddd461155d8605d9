"""Settings: every one is a keyword argument, falling back to a ``SPANLYTICS_*`` env var,
then to a documented default. This is the only place that reads the environment.

>>> Settings.resolve(local_path="/tmp/api.db").local_path
'/tmp/api.db'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from spanlytics._throttle import ThrottledLogger

if TYPE_CHECKING:
    from spanlytics.masking import MaskingRules

_log = ThrottledLogger(logging.getLogger("spanlytics.config"))

IdentifyConsumer = Callable[[Any], object]
"""A callback receiving a :class:`spanlytics.capture.RequestView` and returning a
``Consumer``, an identifier string, a mapping, or ``None``."""

KNOWN_DESTINATIONS = ("local",)


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be > 0")
    return value


def _optional_str(raw: str) -> str | None:
    return raw.strip() or None


_ENV_PARSERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "enabled": ("SPANLYTICS_ENABLED", _bool),
    "destinations": ("SPANLYTICS_DESTINATIONS", _csv),
    "local_path": ("SPANLYTICS_LOCAL_PATH", str),
    "capture_bodies": ("SPANLYTICS_CAPTURE_BODIES", _bool),
    "capture_headers": ("SPANLYTICS_CAPTURE_HEADERS", _bool),
    "max_body_bytes": ("SPANLYTICS_MAX_BODY_BYTES", _non_negative_int),
    "consumer_header": ("SPANLYTICS_CONSUMER_HEADER", _optional_str),
    "mask_headers": ("SPANLYTICS_MASK_HEADERS", _csv),
    "mask_fields": ("SPANLYTICS_MASK_FIELDS", _csv),
    "mask_allow": ("SPANLYTICS_MASK_ALLOW", _csv),
    "max_queue_size": ("SPANLYTICS_MAX_QUEUE_SIZE", _positive_int),
    "batch_size": ("SPANLYTICS_BATCH_SIZE", _positive_int),
    "flush_interval_s": ("SPANLYTICS_FLUSH_INTERVAL", _positive_float),
    "max_response_wait_s": ("SPANLYTICS_MAX_RESPONSE_WAIT", _positive_float),
}


def _known_destinations(names: tuple[str, ...]) -> tuple[str, ...]:
    known = tuple(dict.fromkeys(n.lower() for n in names if n.lower() in KNOWN_DESTINATIONS))
    unknown = [n for n in names if n.lower() not in KNOWN_DESTINATIONS]
    if unknown:
        _log.warning(
            "destinations.unknown",
            "ignoring unknown spanlytics destination(s) %s; known: %s",
            ", ".join(unknown),
            ", ".join(KNOWN_DESTINATIONS),
        )
    return known


@dataclass(frozen=True)
class Settings:
    """Resolved spanlytics settings. Build it with :meth:`resolve`.

    ``masking`` (a :class:`~spanlytics.masking.MaskingRules`) and ``identify_consumer`` are
    code-only; the ``mask_*`` settings add patterns to it from the environment.
    """

    enabled: bool = True
    destinations: tuple[str, ...] = ("local",)
    local_path: str = "./spanlytics.db"
    capture_bodies: bool = True
    capture_headers: bool = True
    max_body_bytes: int = 64 * 1024
    consumer_header: str | None = None
    mask_headers: tuple[str, ...] = ()
    mask_fields: tuple[str, ...] = ()
    mask_allow: tuple[str, ...] = ()
    max_queue_size: int = 20_000
    batch_size: int = 512
    flush_interval_s: float = 1.0
    max_response_wait_s: float = 30.0
    masking: MaskingRules | None = field(default=None, compare=False)
    identify_consumer: IdentifyConsumer | None = field(default=None, compare=False)

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Keyword arguments win; then ``SPANLYTICS_*`` variables; then the defaults.

        Unknown keyword arguments raise ``TypeError`` (a programming error at start-up).
        An invalid environment value logs a warning naming the variable and keeps the default.
        """
        environ = os.environ if env is None else env
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown spanlytics setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, (var, parse) in _ENV_PARSERS.items():
            raw = environ.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                _log.warning(f"env.{var}", "ignoring invalid %s (%s); using the default", var, exc)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("destinations"), str):
            values["destinations"] = _csv(values["destinations"])
        if "destinations" in values:
            values["destinations"] = _known_destinations(values["destinations"])
        return cls(**values)

    def masking_rules(self) -> MaskingRules:
        """The code-given masking rules extended by the ``SPANLYTICS_MASK_*`` variables."""
        from dataclasses import replace

        from spanlytics.masking import MaskingRules

        rules = self.masking or MaskingRules()
        return replace(
            rules,
            header_patterns=(*rules.header_patterns, *self.mask_headers),
            field_patterns=(*rules.field_patterns, *self.mask_fields),
            allow=(*rules.allow, *self.mask_allow),
        )
