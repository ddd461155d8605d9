"""What a user can ask of masking, beyond its defaults: a value at the ground.

:class:`MaskingRules` (extra patterns, an allow list, a callback, the replacement text, how
exceptions are masked) travels in the settings (``configure(masking=...)``) to the masking
stage, :mod:`spanlytics.masking`, which applies it. Nothing here imports spanlytics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = ["EXCEPTION_MODES", "KEEP", "MaskingCallback", "MaskingRules"]

EXCEPTION_MODES: Final = ("strict", "rules", "omit")
"""How exception messages and stack traces are masked (``MaskingRules.exceptions``,
``SPANLYTICS_MASK_EXCEPTIONS``):

* ``strict`` (default): the free-text rules, plus the word right after a sensitive name
  (``bad password hunter2`` -> ``bad password [masked]``) unless it is a common word
  (``token expired`` is kept).
* ``rules``: the free-text rules only, as for text bodies.
* ``omit``: message and stack trace are replaced; the exception type and the stack trace's
  ``File "...", line N, in f`` lines are kept.
"""


class _Keep:
    __slots__ = ()

    def __repr__(self) -> str:
        return "KEEP"

    def __reduce__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
"""Returned by a :data:`MaskingCallback` to keep the original value."""

MaskingCallback: TypeAlias = Callable[[str, str, str], "str | object | None"]
"""``(path, value, rule) -> KEEP | replacement | None`` (None: the default replacement)."""


@dataclass(frozen=True)
class MaskingRules:
    """What to mask beyond the defaults, and how.

    ``header_patterns`` / ``field_patterns``: extra regexes (``re.search``, case-insensitive)
    for header names / query, form and JSON field names. ``allow``: exact names, any case,
    never masked nor shown to the callback. ``callback(path, value, rule)``: see
    :data:`MaskingCallback`. ``replacement``: the text that replaces a masked value.
    ``exceptions``: one of :data:`EXCEPTION_MODES`.

    >>> from spanlytics.masking import Masker
    >>> masker = Masker(MaskingRules(field_patterns=(r"^dob$",), replacement="***"))
    >>> masker.mask_query("dob=1970-01-01&doberman=1", "request.query")
    ('dob=%2A%2A%2A&doberman=1', [MaskedField(path='request.query.dob', rule='field:custom')])
    """

    header_patterns: tuple[str, ...] = ()
    field_patterns: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    callback: MaskingCallback | None = None
    replacement: str = "[masked]"
    exceptions: str = "strict"
