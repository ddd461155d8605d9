"""The dashboard's templates: one Jinja environment that escapes every value it inserts
(``autoescape`` on for every template, whatever its name), and the filters that format
figures. Only markup built here is marked safe: the SVG of :mod:`spanlytics.dashboard.charts`,
which escapes its own texts."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["STATIC", "render"]

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _when(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _printable(value: object) -> str:
    """Control characters of stored text shown as ``?``, so that a value cannot fake lines."""
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in str(value))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ms=_ms, pct=_pct, count=_count, when=_when, printable=_printable)
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
