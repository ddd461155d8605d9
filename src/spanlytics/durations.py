"""Durations written as people write them: ``"30s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"``.

Used by ``spanlytics report --since``, ``spanlytics prune --older-than`` and the retention
settings (``SPANLYTICS_RETENTION=30d``, ``off`` to keep everything).
"""

from __future__ import annotations

import re

__all__ = ["MAX_SINCE_S", "check_window", "parse_duration", "parse_retention"]

MAX_SINCE_S = 100 * 365 * 86400.0
"""The longest window: 100 years (36500d), far more than any store holds, and small enough
that its start is still a date and a 64-bit integer of nanoseconds."""
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
_OFF = frozenset({"off", "none", "never", "0"})


def parse_duration(text: str) -> float:
    """Seconds in ``"30s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"`` or a bare ``"90"`` (seconds).

    >>> parse_duration("15m")
    900.0

    Raises :class:`ValueError` for anything else, including zero, an empty text and durations
    longer than :data:`MAX_SINCE_S`.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use a number with s, m, h, d or w (e.g. 15m, 7d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    check_window(seconds, repr(text))
    return seconds


def check_window(seconds: float, shown: str) -> None:
    """Raise :class:`ValueError` unless ``seconds`` is in (0, :data:`MAX_SINCE_S`]."""
    # "not <=" also rejects NaN; inf and 1e300 would overflow the nanosecond arithmetic.
    if not seconds > 0:
        raise ValueError(f"invalid duration {shown}: must be greater than zero")
    if not seconds <= MAX_SINCE_S:
        raise ValueError(f"invalid duration {shown}: at most {MAX_SINCE_S / 86400:.0f}d (100 years)")


def parse_retention(text: str) -> float | None:
    """A retention setting: a duration in seconds, or None for ``off`` (keep everything).

    >>> parse_retention("30d"), parse_retention("off")
    (2592000.0, None)
    """
    if text.strip().lower() in _OFF:
        return None
    try:
        return parse_duration(text)
    except ValueError:  # the message would quote the value
        raise ValueError("expected a duration such as 30d, 12h or 90m, or off") from None
