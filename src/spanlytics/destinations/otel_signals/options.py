"""The otel destination's options (``otel_*``, ``SPANLYTICS_OTEL_*``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from spanlytics._setting_fields import parse_bool, setting
from spanlytics.destinations.options import DestinationOptions

__all__ = ["OtelOptions"]


@dataclass(frozen=True)
class OtelOptions(DestinationOptions):
    """Which signals the otel destination emits, and how many consumers keep their id as a
    metric attribute (the rest are ``other``)."""

    name: ClassVar[str] = "otel"

    logs: bool = setting(True, parse_bool)  # one log record per request
    metrics: bool = setting(True, parse_bool)  # duration and body size histograms
    max_consumers: int = setting(100, bounds=(0, 1_000_000))
