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


def _stdlib_dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: escape it, as JSON allows
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def _choose() -> tuple[Callable[[Any], bytes], str]:
    try:
        import orjson
    except ImportError:
        return _stdlib_dumps, "json"

    def orjson_dumps(value: Any) -> bytes:
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
        except (TypeError, ValueError):  # lone surrogates, integers beyond 64 bits
            return _stdlib_dumps(value)

    return orjson_dumps, "orjson"


dumps, BACKEND = _choose()
"""``dumps(value) -> bytes``: compact JSON; ``BACKEND`` says which library encodes."""


def _stdlib_dumps_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _choose_text() -> tuple[Callable[[str], Any], Callable[[Any], str], Callable[[str], bool]]:
    try:
        import orjson
    except ImportError:
        return json.loads, _stdlib_dumps_text, lambda out: False

    def orjson_loads(text: str) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:  # NaN, lone surrogates: the standard library decides
            return json.loads(text)

    def orjson_dumps_text(value: Any) -> str:
        try:
            return orjson.dumps(value).decode("utf-8")
        except (TypeError, ValueError):  # a lone surrogate or a huge integer in the value
            return _stdlib_dumps_text(value)

    def may_have_rounded(out: str) -> bool:
        # orjson reads an integer beyond 64 bits as a float of at least 9.2e18, which it
        # writes with an exponent ("1.2345678901234568e+29"); the text must be parsed again
        # with the standard library. A false alarm (a real float >= 1e16, "e+" in a string)
        # only costs that second parse.
        return "e+" in out

    return orjson_loads, orjson_dumps_text, may_have_rounded


loads_text, dumps_text, may_have_rounded = _choose_text()
"""``loads_text(text)`` parses like ``json.loads`` (raising ``ValueError``), except that
with orjson an integer beyond 64 bits becomes a float; ``dumps_text(value) -> str`` is
compact JSON with non-ASCII kept, like ``json.dumps(value, ensure_ascii=False,
separators=(",", ":"))``; ``may_have_rounded(out)`` is True when ``dumps_text``'s output
may hold such a float, so that the text must be parsed with ``json.loads`` to stay exact."""
