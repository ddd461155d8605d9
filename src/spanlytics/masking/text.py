"""Free-text heuristics: secrets in text bodies, header values, string values and exceptions.

Passes, in this order (a later pass skips what an earlier one masked):

1. XML: ``<password>v</password>`` and name/value pairs such as
   ``<param name="password">v</param>`` or ``<add key="ApiKey" value="v"/>``.
2. Pairs: ``name=value``, ``name: value``, ``"name": "value"``, ``name="value"`` for sensitive
   names. A value runs through commas and semicolons that are not followed by a space
   (``password=a,b;c``); after an authorization scheme (``Authorization: Token abc``) the
   credentials are part of the value (a ``Digest`` one to the end of the line); a YAML block
   (``password: |`` or ``password:`` then indented lines) is masked whole.
3. Credentials anywhere: ``Bearer``/``Basic``/``Digest``/``Negotiate``/``NTLM``/``DPoP``
   credentials, anything shaped like a JWT (``eyJ...``), the password in a URL
   (``postgres://bob:pw@db``), payment card numbers (13-19 digits passing the Luhn check)
   and IBANs (a known country's code, check digits and length).
4. The word after a sensitive name (and an ``is``/``was``): in exception text (``strict``)
   any word but a common one (``bad password hunter2``, not ``token expired``); elsewhere
   only a long random-looking token (``the api key is 8f9a...``).

This module does no I/O and imports only the rules.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable

from spanlytics.masking.rules import ANYWHERE_SCHEMES, AUTH_SCHEMES, COMMON_WORDS, IBAN_LENGTHS
from spanlytics.record import MaskedField

Edits = list[tuple[int, int, str]]
Locate = Callable[[str, re.Match[str]], "tuple[str, int, int] | None"]

_TEXT_PAIR = re.compile(
    r"""(?<![\w.\-<])(?<!</)(?:(["'])([^"'\n<>=:]{1,64})\1|([A-Za-z_][\w.\-]*))[ \t]*([=:])[ \t]*"""
)
# a quoted value, a bracketed one, or a run that goes on through "," and ";" not followed by
# a space (so "a,b" is one value and "a, next" is not)
_TEXT_VALUE = re.compile(
    r""""(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|\[[^\]\s]*\]?"""
    r"""|(?:[^\s&,;"'<>(){}\[\]]|[,;](?=[^\s,;&"'<>]))+"""
)
_SCHEME_NAMES = frozenset(name for name, _ in AUTH_SCHEMES)
_AFTER_SCHEME = re.compile(r"[ \t]+((?:[^\s,;\"'<>]|[,;](?=[^\s,;\"'<>]))+)")
_LONG_TOKEN = re.compile(r"[ \t]+([A-Za-z0-9\-._~+/]{16,}=*)(?![^\s,;\"'<>])")
_TO_EOL = re.compile(r"[^\r\n]*")
_YAML_ANCHOR = re.compile(r"[&!][!\w\-]*[ \t]+")
_YAML_INDICATOR = re.compile(r"(?:[|>][-+0-9]*)?[ \t]*(?:#[^\n]*)?(?:\r?\n|\Z)")
_CREDENTIALS = re.compile(
    r"\b(?:(?:" + "|".join(s for s in ANYWHERE_SCHEMES if s != "digest") + r")[ \t]+([A-Za-z0-9\-._~+/]+=*)"
    r"|digest[ \t]+([^\r\n]+)"
    r"|(eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{2,}(?:\.[A-Za-z0-9_\-]*){1,3}))",
    re.I,
)
_URL_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@\"'<>]+:([^\s/@\"'<>]+)@")
# the major networks' numbers start with 2-6 (a 13-digit millisecond timestamp does not)
_CARD = re.compile(r"(?<![\w.-])[2-6](?:[ -]?\d){12,18}(?![\w.-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_XML_OPEN = re.compile(r"<([A-Za-z_][\w:.\-]*)(\s[^<>]*)?>")
_XML_NAME_ATTR = re.compile(
    r"""\b(?:name|key|id|field|param|property|attribute|variable)\s*=\s*(["'])([^"'<>]{1,64})\1""", re.I
)
_XML_VALUE_ATTR = re.compile(r"""\bvalue\s*=\s*(["'])([^"'<>]*)\1""", re.I)
_IDENT_TAIL = re.compile(r"[\w.\-]*\Z")
_IDENT_HEAD = re.compile(r"[\w.\-]*")
_WORD_AFTER = re.compile(r"[ \t]+(?:(?:is|was|are)[ \t]+)?[\"']?([^\s\"'`,;()\[\]{}<>]+)")
_NOT_SECRETS = frozenset({"null", "none", "nil", "true", "false", "undefined"})  # no value to hide
_RANDOM = re.compile(r"[A-Za-z0-9+/=_\-.~]{16,}")


def splice(text: str, edits: Edits) -> str:
    pieces: list[str] = []
    last = 0
    for start, end, replacement in edits:
        pieces += (text[last:start], replacement)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _looks_random(word: str) -> bool:
    """A long token with letters and at least two digits: a key, not a word."""
    return (
        _RANDOM.fullmatch(word) is not None
        and sum(c.isdigit() for c in word) >= 2
        and any(c.isalpha() for c in word)
    )


CARD_HINT = re.compile(r"[2-6]\d{3}[ -]?\d{4}[ -]?\d{4}")
"""Where a card number may start (for the fast path)."""
IBAN_HINT = re.compile(r"[A-Z][A-Z]\d\d ?[A-Z0-9]{4}")  # spelled out: a leading class is scanned fast
"""Where an IBAN may start: four times slower to look for than a card number, so the fast
path looks for it only in short texts (values); longer ones need a sensitive name."""


def _url_password(text: str, m: re.Match[str]) -> tuple[str, int, int] | None:
    return "text:credentials", *m.span(1)


def _card_number(text: str, m: re.Match[str]) -> tuple[str, int, int] | None:
    """13-19 digits (spaces or dashes allowed) that pass the Luhn check: a card number."""
    digits = [int(c) for c in m.group(0) if c.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    return ("text:card", *m.span()) if total % 10 == 0 and len(set(digits)) > 1 else None


def _iban(text: str, m: re.Match[str]) -> tuple[str, int, int] | None:
    """An IBAN: a known country code, two check digits and that country's length."""
    compact = m.group(0).replace(" ", "")
    return ("text:iban", *m.span()) if IBAN_LENGTHS.get(compact[:2]) == len(compact) else None


def _looks_like_credentials(match: str, token: str) -> bool:
    """After a scheme anywhere in prose: Basic credentials are base64 of ``user:password``;
    other tokens are not a lower-case word."""
    if match[:5].lower() == "basic":
        try:
            bare = token.rstrip("=")  # padding as it should be: Python 3.10 rejects excess "="
            return b":" in base64.b64decode(bare + "=" * (-len(bare) % 4), validate=True)
        except ValueError:
            return False
    return len(token) >= 8 and not (token.isalpha() and token.islower())


class TextMasker:
    """The free-text heuristics, judged by the masker's name rules and decisions.

    ``text_rule(name)`` gives the ``text:*`` rule of a name (or None), ``decide(path, value,
    rule)`` the replacement (or None to keep), ``name_hits(text, low)`` the spans where a
    sensitive name may be.
    """

    def __init__(
        self,
        text_rule: Callable[[str], str | None],
        decide: Callable[[str, str, str], str | None],
        name_hits: Callable[[str, str], Iterable[tuple[int, int]]],
        replacement: str,
    ) -> None:
        self._text_rule = text_rule
        self._decide = decide
        self._name_hits = name_hits
        self._replacement = replacement

    def mask(self, text: str, prefix: str, low: str, strict: bool) -> tuple[str, list[MaskedField]]:
        """Every pass over ``text`` (``low`` is ``text.lower()``); matches reported at ``prefix``."""
        masks: list[MaskedField] = []
        if "<" in text:
            text = self._text_pass(text, prefix, masks, _XML_OPEN, self._xml_value)
        text = self._text_pass(text, prefix, masks, _TEXT_PAIR, self._pair_value)
        text = self._text_pass(text, prefix, masks, _CREDENTIALS, self._credentials_value)
        if "://" in text:
            text = self._text_pass(text, prefix, masks, _URL_PASSWORD, _url_password)
        if CARD_HINT.search(text):
            text = self._text_pass(text, prefix, masks, _CARD, _card_number)
        if IBAN_HINT.search(text):
            text = self._text_pass(text, prefix, masks, _IBAN, _iban)
        text = self._word_pass(text, prefix, masks, strict)
        return text, list(dict.fromkeys(masks))

    def _text_pass(
        self, text: str, prefix: str, masks: list[MaskedField], finder: re.Pattern[str], locate: Locate
    ) -> str:
        """One heuristic over ``text``: ``finder`` finds candidates, ``locate`` says which
        rule matched and where the value is (or None)."""
        edits: Edits = []
        last = 0
        for m in finder.finditer(text):
            if m.start() < last:  # inside a value masked already
                continue
            found = locate(text, m)
            if found is None:
                continue
            rule, start, end = found
            if self._edit(text, prefix, masks, edits, rule, start, end):
                last = end
        return splice(text, edits) if edits else text

    def _edit(
        self, text: str, prefix: str, masks: list[MaskedField], edits: Edits, rule: str, start: int, end: int
    ) -> bool:
        value = text[start:end]
        if not value.strip() or value == self._replacement or value.lower() in _NOT_SECRETS:
            return False
        replacement = self._decide(prefix, value, rule)
        if replacement is None:
            return False
        edits.append((start, end, replacement))
        masks.append(MaskedField(prefix, rule))
        return True

    # --- locators ------------------------------------------------------------------------

    def _xml_value(self, text: str, m: re.Match[str]) -> tuple[str, int, int] | None:
        attrs = m.group(2) or ""
        self_closing = attrs.rstrip().endswith("/")
        rule = self._text_rule(m.group(1))
        if rule is None:  # <param name="password">v</param>, <add key="ApiKey" value="v"/>
            named = _XML_NAME_ATTR.search(attrs)
            rule = None if named is None else self._text_rule(named.group(2))
            if rule is None:
                return None
            value = _XML_VALUE_ATTR.search(attrs)
            if value is not None:
                offset = m.start(2)
                return rule, offset + value.start(2), offset + value.end(2)
        if self_closing:
            return None
        close = text.find(f"</{m.group(1)}", m.end())
        return rule, m.end(), close if close >= 0 else len(text)  # unclosed: to the end

    def _pair_value(self, text: str, m: re.Match[str]) -> tuple[str, int, int] | None:
        rule = self._text_rule(m.group(2) or m.group(3))
        if rule is None:
            return None
        after = m.end()
        if m.group(4) == ":":
            block = self._yaml_block(text, m, after)
            if block is not None:
                return rule, *block
        anchor = _YAML_ANCHOR.match(text, after)  # "api_key: &k value", "key: !!str value"
        value = _TEXT_VALUE.match(text, anchor.end() if anchor is not None else after)
        if value is None:
            return None
        start, end = value.span()
        quote_char = text[start]
        if quote_char in "\"'":
            start += 1
            if end > start and text[end - 1] == quote_char:
                end -= 1
            return rule, start, end
        word = text[start:end].lower()
        if word == "digest":  # parameters with commas and spaces: to the end of the line
            end = _TO_EOL.match(text, end).end()  # type: ignore[union-attr]
        elif word in _SCHEME_NAMES:  # "Token abc": the credentials belong to the value
            more = _AFTER_SCHEME.match(text, end)
            end = more.end() if more is not None else end
        elif word.isalpha():  # an unknown scheme followed by a long token
            more = _LONG_TOKEN.match(text, end)
            end = more.end() if more is not None else end
        return rule, start, end

    @staticmethod
    def _yaml_block(text: str, m: re.Match[str], after: int) -> tuple[int, int] | None:
        """``name: |`` (or ``>``, or nothing) then lines indented deeper than the name's."""
        indicator = _YAML_INDICATOR.match(text, after)
        if indicator is None or indicator.end() == len(text):
            return None
        line_start = text.rfind("\n", 0, m.start()) + 1
        indent = len(text[line_start : m.start()]) - len(text[line_start : m.start()].lstrip(" \t"))
        start = pos = indicator.end()
        end = start
        while pos < len(text):
            newline = text.find("\n", pos)
            line_end = len(text) if newline < 0 else newline
            line = text[pos:line_end]
            stripped = line.lstrip(" \t")
            if stripped.strip() and len(line) - len(stripped) <= indent:
                break
            if stripped.strip():
                end = line_end
            pos = line_end + 1
        return (start, end) if end > start else None

    @staticmethod
    def _credentials_value(text: str, m: re.Match[str]) -> tuple[str, int, int] | None:
        group = 1 if m.group(1) is not None else 2 if m.group(2) is not None else 3
        whole = m.start() == 0 and m.end() == len(text.rstrip())  # the value is "Bearer x"
        if group == 1 and not whole and not _looks_like_credentials(m.group(0), m.group(1)):
            return None  # "basic plan", "bearer of bad news"
        return "text:credentials", *m.span(group)

    # --- the word after a sensitive name -------------------------------------------------

    def _word_pass(self, text: str, prefix: str, masks: list[MaskedField], strict: bool) -> str:
        edits: Edits = []
        last = 0
        for hit, hit_end in sorted(set(self._name_hits(text, text.lower()))):
            if hit < last:
                continue
            head = _IDENT_TAIL.search(text, max(0, hit - 64), hit)
            start = head.start() if head is not None else hit
            if start > 0 and text[start - 1] in "/\\":  # a path, not a name
                continue
            # to the end of the identifier, or of the name the rule matched ("api key")
            end = _IDENT_HEAD.match(text, max(hit_end, _IDENT_HEAD.match(text, hit).end())).end()  # type: ignore[union-attr]
            name = text[start:end].strip(".-")
            rule = self._text_rule(name) if name else None
            if rule is None:
                continue
            word = _WORD_AFTER.match(text, end)
            if word is None:
                continue
            value = word.group(1)
            bare = value.lower().rstrip(".:!?")
            if strict:
                if bare in COMMON_WORDS or not any(c.isalnum() for c in value):
                    continue
            elif not _looks_random(value):
                continue
            if self._edit(text, prefix, masks, edits, rule, word.start(1), word.end(1)):
                last = word.end(1)
        return splice(text, edits) if edits else text
