"""JSON for destination payloads and masking: ``orjson`` when installed (``spanlytics[fast]``),
else the standard library, with the same values (compact, UTF-8, non-ASCII kept).

orjson is stricter and narrower than the standard library, and each difference falls back
to it: orjson rejects lone surrogates and ``NaN``/``Infinity`` (the standard library then
parses or encodes them), and it reads integers beyond 64 bits as floats (masking checks its
output with :func:`may_have_rounded` and parses such a body again with the standard
library, so a logged number never changes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def stdlib_dumps_text(value: Any) -> str:
    """Compact JSON text with non-ASCII kept, from the standard library (exact for any
    integer; a lone surrogate stays a lone surrogate)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _stdlib_dumps(value: Any) -> bytes:
    text = stdlib_dumps_text(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escape it, as JSON allows
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def _never(out: str) -> bool:
    return False


def _choose() -> tuple[
    Callable[[Any], bytes], str, Callable[[str], Any], Callable[[Any], str], Callable[[str], bool]
]:
    try:
        import orjson
    except ImportError:
        return _stdlib_dumps, "json", json.loads, stdlib_dumps_text, _never

    def orjson_dumps(value: Any) -> bytes:
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, ValueError):  # lone surrogates, integers beyond 64 bits
            return _stdlib_dumps(value)

    def orjson_loads(text: str) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:  # NaN, lone surrogates: the standard library decides
            return json.loads(text)

    def orjson_dumps_text(value: Any) -> str:
        try:
            return orjson.dumps(value).decode("utf-8")
        except (TypeError, ValueError):  # a lone surrogate or a huge integer in the value
            return stdlib_dumps_text(value)

    def may_have_rounded(out: str) -> bool:
        # orjson reads an integer beyond 64 bits as a float of at least 9.2e18, which it
        # writes with an exponent ("1.2345678901234568e+29"); the text must be parsed again
        # with the standard library. A false alarm (a real float >= 1e16, "e+" in a string)
        # only costs that second parse.
        return "e+" in out

    return orjson_dumps, "orjson", orjson_loads, orjson_dumps_text, may_have_rounded


dumps, BACKEND, loads_text, dumps_text, may_have_rounded = _choose()
"""``dumps(value) -> bytes``: compact JSON (lone surrogates escaped); ``BACKEND`` says which
library encodes. ``loads_text(text)`` parses like ``json.loads`` (raising ``ValueError``),
except that with orjson an integer beyond 64 bits becomes a float; ``dumps_text(value) ->
str`` is :func:`stdlib_dumps_text`'s output (numbers may be written differently but mean the
same); ``may_have_rounded(out)`` is True when ``dumps_text``'s output may hold such a float,
so that the text must be parsed with ``json.loads`` to stay exact."""
