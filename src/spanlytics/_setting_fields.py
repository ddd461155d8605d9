"""Settings fields: a default, a ``SPANLYTICS_*`` variable and its parser each, as data.

The core :class:`~spanlytics.config.Settings` and every destination's options class are
frozen dataclasses made of :func:`setting` fields, resolved by :func:`resolve_fields`
(keyword > variable > default) and checked by :func:`bounds_problems`, so that a destination
parses and validates its options exactly as the core does::

    @dataclass(frozen=True)
    class HttpOptions:
        url: str | None = setting(None, parse_optional_str)  # http_url, SPANLYTICS_HTTP_URL
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import Field, field, fields
from typing import TYPE_CHECKING, Any

from spanlytics._throttle import ThrottledLogger

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_log = ThrottledLogger(logging.getLogger("spanlytics.config"))


Parser = Callable[[str], Any]
"""Parses a variable's text; raises ``ValueError`` naming the expectation, never the text."""

Bounds = tuple[float, float]
"""A numeric setting's range, inclusive: ints for counts; floats for seconds, which must also
be > 0 (an interval of 0 spins a thread; NaN, inf or 1e300 s make every timed wait raise
OverflowError in the thread that owns it). The maxima only reject typos and absurd values."""


def parse_csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def parse_optional_str(raw: str) -> str | None:
    return raw.strip() or None


def _expectation(bounds: Bounds) -> str:
    """What a valid value looks like (never the value that was given)."""
    low, high = bounds
    if isinstance(low, float):
        return f"expected a number of seconds > 0 and <= {high:g}"
    return f"expected a whole number from {low} to {high}"


def bounds_problem(bounds: Bounds, value: object) -> str | None:
    """Why ``value`` is not in ``bounds``, or None when it is."""
    low, high = bounds
    seconds = isinstance(low, float)
    kinds = (int, float) if seconds else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        return _expectation(bounds)
    ok = (math.isfinite(value) and low < value <= high) if seconds else low <= value <= high
    return None if ok else _expectation(bounds)


def bounds_parser(bounds: Bounds) -> Parser:
    """The variable parser of a numeric setting in ``bounds``."""
    seconds = isinstance(bounds[0], float)

    def parse(raw: str) -> float:
        try:
            value: float = float(raw.strip()) if seconds else int(raw.strip())
        except ValueError:
            raise ValueError(_expectation(bounds)) from None  # int()'s message quotes the value
        problem = bounds_problem(bounds, value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return parse


def setting(
    default: Any,
    parse: Parser | None = None,
    *,
    bounds: Bounds | None = None,
    names: bool = False,
    regexes: bool = False,
    secret: bool = False,
    text: bool = False,
) -> Any:
    """A settings field: its default and how its variable is parsed. The variable is
    ``SPANLYTICS_`` + the keyword in capitals, without a trailing ``_S`` (``flush_interval_s``:
    ``SPANLYTICS_FLUSH_INTERVAL``). A list of ``names`` given as one string in code is parsed
    as the variable (comma-separated); a list of ``regexes`` keeps it as one pattern, since a
    regex may hold a comma (``a{1,3}``). A ``text`` setting given as a string in code is parsed
    as its variable (``retention_s="7d"``). ``secret`` values stay out of ``repr``."""
    parse = bounds_parser(bounds) if bounds is not None else parse
    kind = "names" if names or text else "regexes" if regexes else None
    return field(default=default, repr=not secret, metadata={"parse": parse, "bounds": bounds, "list": kind})


def variable_of(keyword: str) -> str:
    """``SPANLYTICS_`` + the keyword in capitals, without the unit ``_s`` of seconds."""
    return "SPANLYTICS_" + keyword.removesuffix("_s").upper()


def _parsed(f: Field[Any]) -> bool:
    return f.metadata.get("parse") is not None


def resolve_fields(
    cls: type[DataclassInstance], environ: Mapping[str, str], given: Mapping[str, Any], prefix: str = ""
) -> dict[str, Any]:
    """The values of ``cls``'s :func:`setting` fields (by field name) from ``given`` keywords
    (``prefix`` + field name) over their variables. ``None`` means "not given". An invalid
    variable logs a warning naming it (never the value) and its default applies."""
    values: dict[str, Any] = {}
    for f in filter(_parsed, fields(cls)):
        variable, parse = variable_of(prefix + f.name), f.metadata["parse"]
        raw = environ.get(variable)
        if raw is None or raw.strip() == "":
            continue
        try:
            values[f.name] = parse(raw)
        except ValueError as exc:  # the message names the expectation, never the value
            _log.warning(f"env.{variable}", "ignoring invalid %s (%s); using the default", variable, exc)
    kinds = {f.name: f.metadata.get("list") for f in fields(cls)}
    for name, value in ((k.removeprefix(prefix), v) for k, v in given.items() if v is not None):
        if isinstance(value, str) and kinds.get(name) == "names":
            try:
                values[name] = cls.__dataclass_fields__[name].metadata["parse"](value)
            except ValueError as exc:  # the message names the expectation, never the value
                raise ValueError(f"invalid spanlytics setting(s): {prefix}{name} ({exc})") from None
        elif isinstance(value, str) and kinds.get(name) == "regexes":
            values[name] = (value,)
        else:
            values[name] = value
    return values


def bounds_problems(values: DataclassInstance) -> dict[str, str | None]:
    """Why each numeric field of ``values`` is out of its bounds (None: it is not; a field
    whose value is None has no value to check)."""
    return {
        f.name: bounds_problem(f.metadata["bounds"], getattr(values, f.name))
        for f in fields(values)
        if f.metadata.get("bounds") and getattr(values, f.name) is not None
    }


def raise_problems(problems: Mapping[str, str | None], prefix: str = "") -> None:
    """One ``ValueError`` naming every invalid setting and why (never a value)."""
    bad = [f"{prefix}{name} ({problem})" for name, problem in problems.items() if problem is not None]
    if bad:
        raise ValueError(f"invalid spanlytics setting(s): {'; '.join(bad)}")
