"""JSON encoding for destination payloads: ``orjson`` when installed (``spanlytics[fast]``),
else the standard library, with the same output (compact, UTF-8, non-ASCII kept).

Only encoding goes through orjson. Masking parses bodies with the standard library: orjson
reads integers beyond 64 bits as floats, which would change the logged numbers.
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
