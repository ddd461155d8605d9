"""The text kept for a captured body: decoded text, or a placeholder naming its size and type.

Bodies are text: only text-like content types (JSON, form, text, XML) keep their content;
others become a placeholder naming their size. A declared charset is honoured
(``charset=utf-16``, ``latin-1``, ...); bytes invalid in it become replacement characters,
never an error. UTF-16 and UTF-32 sent without a charset are recognised by their byte-order
mark or their NUL bytes. A body in a charset Python does not know, or that would still be
text riddled with NULs, is treated as binary: masking could not read it, so it must not be
stored as text.

>>> body_text(b'{"ok": true}', "application/json", 12)
'{"ok": true}'
>>> body_text(b"\\x89PNG", "image/png", 2048)
'[body omitted: 2048 bytes of image/png]'

This module does no I/O and imports nothing of spanlytics.
"""

from __future__ import annotations

import codecs
import re

_TEXT_TYPES = re.compile(
    r"^(?:text/|application/(?:[\w.+-]*\+)?(?:json|xml)\b|application/x-www-form-urlencoded\b"
    r"|application/(?:javascript|graphql|x-ndjson|ld\+json)\b)",
    re.IGNORECASE,
)
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:\-]+)""", re.IGNORECASE)


def is_text_content_type(content_type: str | None) -> bool:
    """True for the content types whose bodies are kept as text (JSON, form, text, XML).

    A body without a content type counts as text (HAR and ReadMe treat it as ``text/plain``).
    """
    if not content_type:
        return True
    return _TEXT_TYPES.match(content_type.strip()) is not None


def _charset(content_type: str | None) -> str | None:
    """The codec of a content type's ``charset`` parameter: None for UTF-8 or none given,
    ``""`` for one Python does not know."""
    if not content_type or "charset" not in content_type.lower():
        return None
    match = _CHARSET.search(content_type)
    if match is None:
        return None
    try:
        name = codecs.lookup(match.group(1)).name
    except LookupError:
        return ""
    return None if name == "utf-8" else name


def body_text(raw: bytes | None, content_type: str | None, size: int | None) -> str | None:
    """The text kept for a captured body: decoded text, a placeholder, or None for no body."""
    if not raw:  # no body, or one the app never read: we did not see it, so none is logged
        return None
    omitted = f"[body omitted: {size if size is not None else len(raw)} bytes of {_media_type(content_type)}]"
    if not is_text_content_type(content_type):
        return omitted
    charset = _charset(content_type)
    if charset == "":  # an unknown charset: the text cannot be read, so it cannot be masked
        return omitted
    text = raw.decode(charset or "utf-8", errors="replace")
    if "\x00" in text and text.count("\x00") * 4 >= len(text):  # UTF-16 or -32 without its charset
        text = _wide_text(raw) or ""
        if not text:
            return omitted
    return text


def _wide_text(raw: bytes) -> str | None:
    """A body in UTF-16 or UTF-32 sent without its charset, by its byte-order mark or else by
    where its NUL bytes are; None when that does not give NUL-free text either."""
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        codec = "utf-32"
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        codec = "utf-16"
    else:  # ASCII in UTF-16-LE has its NULs at odd offsets
        codec = "utf-16-le" if raw[1::2].count(0) >= raw[0::2].count(0) else "utf-16-be"
    text = raw.decode(codec, errors="replace")
    return None if "\x00" in text else text


def _media_type(content_type: str | None) -> str | None:
    """The type without its parameters (a client-chosen parameter could carry anything)."""
    return content_type.split(";", 1)[0].strip() if content_type else content_type
