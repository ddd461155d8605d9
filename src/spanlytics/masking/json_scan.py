"""JSON as text: the token scanner for malformed, truncated or lenient JSON, and the helpers
that check that a parsed body and its text agree.

The scanner masks the value after any sensitive key: a double-quoted, single-quoted or bare
key (``{'password': 1}``, ``{password: 1}``), a scalar token or a container up to its close
(or the end of the text). It never needs the text to be valid, so what a parser would
refuse or read differently (duplicate keys, a byte-order mark, an anti-XSSI prefix) is
masked all the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from spanlytics.record import MaskedField

_UESC = re.compile(r"\\u([0-9a-fA-F]{4})")
# Covers all of a text after its leading whitespace: a (maybe unterminated) double-quoted
# string, a single-quoted one closed on its line, a punctuation mark or a run of anything
# else, each with its trailing whitespace.
_JSON_TOKEN = re.compile(
    r"""(?:"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|'[^'\\\n]*(?:\\.[^'\\\n]*)*'|[{}\[\]:,]|[^\s"{}\[\]:,]+)\s*""",
    re.S,
)
_STRUCTURE = re.compile(r"[{}\[\],]|[^{}\[\],:](?=:)")  # one character per token: keys and structure
_DEPTH = {"{": 1, "[": 1, "}": -1, "]": -1}
_KEY_COLON = re.compile(r'"\s*:')
_QUOTE_SPACE = re.compile(r'"\s')
# What some servers put before a JSON body: a byte-order mark, Angular's and Google's
# anti-XSSI prefixes (")]}'", "while(1);", "for(;;);").
_JSON_PREFIX = re.compile(r"\ufeff?(?:\)\]\}',?|while\(1\);|for\(;;\);)?\s*")


def decode_key(inner: str) -> str:
    if "\\" not in inner:
        return inner
    try:
        return str(json.loads(f'"{inner}"'))
    except ValueError:
        return _UESC.sub(lambda m: chr(int(m.group(1), 16)), inner)


def split_prefix(text: str) -> tuple[str, str]:
    """``(prefix, json_text)``: a BOM or anti-XSSI prefix before the JSON, if any."""
    prefix = _JSON_PREFIX.match(text)
    end = prefix.end() if prefix is not None else 0
    return text[:end], text[end:]


def key_count(text: str) -> int:
    """An upper bound of the number of keys in a JSON text (a ``"`` before a ``:``)."""
    return len(_KEY_COLON.findall(text))


def holds_keys(text: str, keys: int) -> bool:
    """Whether :func:`key_count` of ``text`` is ``keys``; without the regex when no ``"`` is
    followed by whitespace (compact JSON, and most of what ``json.dumps`` writes)."""
    if _QUOTE_SPACE.search(text) is not None:
        return key_count(text) == keys
    return text.count('":') == keys


def _frames_path(prefix: str, stack: list[str | int | None]) -> str:
    return prefix + "".join(f"[{f}]" if isinstance(f, int) else f".{'?' if f is None else f}" for f in stack)


def _key_text(token: str) -> str:
    raw = token.rstrip()
    if raw[0] == '"':
        return decode_key(raw[1:-1])
    if raw[0] == "'":
        return raw[1:-1]
    return raw


def _value_end(kinds: str, first: int) -> int:
    """The index of the last token of the value starting at ``first``: a scalar's own, a
    container's matching close (or the end of a truncated text)."""
    if kinds[first] not in "{[":
        return first
    depth = 0
    for j, kind in enumerate(kinds[first:], first):
        depth += _DEPTH.get(kind, 0)
        if depth == 0:
            return j
    return len(kinds) - 1


def _masked_value(toks: list[str], first: int, last: int) -> tuple[str, str] | None:
    """The value's text (quotes and escapes removed) and its trailing whitespace, or None
    for an empty one (nothing to mask)."""
    raw = "".join(toks[first : last + 1])
    value = raw.rstrip()
    tail = raw[len(value) :]  # whitespace after the value, kept
    if value in ('""', "''", "null"):
        return None
    if value[0] in "\"'":
        quote = value[0]
        value = decode_key(value[1:-1] if value.endswith(quote) and len(value) > 1 else value[1:])
    return value, tail


def scan_json(
    text: str,
    prefix: str,
    field_rule: Callable[[str], str | None],
    decide: Callable[[str, str, str], str | None],
) -> tuple[str, list[MaskedField], bool]:
    """Mask the value after every sensitive key; also says whether any quoted key was seen."""
    lead = len(text) - len(text.lstrip())
    toks = _JSON_TOKEN.findall(text, lead)  # each token carries its trailing whitespace
    kinds = "".join([t[0] for t in toks])  # one character per token, searched in C
    masks: list[MaskedField] = []
    stack: list[str | int | None] = []  # per open container: its current key or index
    skip = 0  # tokens before this index were masked
    for m in _STRUCTURE.finditer(kinds):
        i = m.start()
        char = kinds[i]
        if i < skip:
            continue
        if char in "{[":
            stack.append(None if char == "{" else 0)
        elif char == ",":
            if stack:
                top = stack[-1]
                stack[-1] = top + 1 if isinstance(top, int) else None
        elif char in "}]":
            if stack:
                stack.pop()
        else:  # a key
            key = _key_text(toks[i])
            in_object = bool(stack) and not isinstance(stack[-1], int)
            if in_object:
                stack[-1] = key
            rule = field_rule(key)
            first = i + 2
            if rule is None or first >= len(toks) or kinds[first] in ",:}]":
                continue
            last = _value_end(kinds, first)
            found = _masked_value(toks, first, last)
            if found is None:
                continue
            path = _frames_path(prefix, stack) + ("" if in_object else f".{key}")
            replacement = decide(path, found[0], rule)
            if replacement is not None:
                toks[first] = json.dumps(replacement, ensure_ascii=False) + found[1]
                toks[first + 1 : last + 1] = [""] * (last - first)
                masks.append(MaskedField(path, rule))
                skip = last + 1
    return text[:lead] + "".join(toks), masks, '":' in kinds
