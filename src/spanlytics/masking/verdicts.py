"""Verdicts: which names are sensitive, whether a text may hold a secret at all (the fast
path), and what replaces a matched value (the callback). The base of
:class:`~spanlytics.masking.Masker`; it does no I/O.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator

from spanlytics._throttle import ThrottledLogger
from spanlytics.masking.rules import (
    DEFAULT_FIELD_PATTERN,
    DEFAULT_HEADER_NAMES,
    DEFAULT_HEADER_PATTERN,
    EXCEPTION_MODES,
    FAILED,
    FIELD_SCAN,
    KEEP,
    NEEDLE_OR_CREDENTIAL_SCAN,
    NEEDLE_SCAN,
    MaskingRules,
    word_hits,
)
from spanlytics.masking.text import CARD_HINT, IBAN_HINT, TextMasker
from spanlytics.record import MaskedField

log = ThrottledLogger(logging.getLogger("spanlytics.masking"))

CACHE_MAX = 4096
SHORT_TEXT = 256  # a value rather than a document (see IBAN_HINT)
_FOLDS = re.compile("[\u0130\u0131\u017f\u212a]")  # equal to i/s/k under re.I, not after lower()
_ANCHORS = re.compile(r"[\^$]|\\[AZbB]|\(\?<?[=!]")
MIN_ECHO = 4  # shorter masked values are too common to hunt for in a response


def _combine(patterns: Iterable[str], what: str) -> re.Pattern[str] | None:
    parts = []
    for pattern in patterns:
        try:
            re.compile(f"(?:{pattern})", re.I)
        except re.error as exc:
            raise ValueError(f"invalid {what} pattern {pattern!r}: {exc}") from None
        parts.append(f"(?:{pattern})")
    return re.compile("|".join(parts), re.I) if parts else None


def _names(value: Iterable[str] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)  # a lone str is one name


class RuleBook:
    """The compiled rules, their cached verdicts and the decision for a matched value.

    While :meth:`~spanlytics.masking.Masker.mask_record` masks a request, every value it
    replaces is also noted (per thread) so that echoes of it can be found.
    """

    def __init__(self, rules: MaskingRules | None = None) -> None:
        rules = rules or MaskingRules()
        if rules.exceptions not in EXCEPTION_MODES:
            raise ValueError(f"exceptions must be one of {', '.join(EXCEPTION_MODES)}")
        self._exceptions = rules.exceptions
        self._replacement = rules.replacement
        self._callback = rules.callback
        self._allow = frozenset(name.lower() for name in _names(rules.allow))
        self._header_default = re.compile(DEFAULT_HEADER_PATTERN, re.I)
        self._field_default = re.compile(DEFAULT_FIELD_PATTERN, re.I)
        self._header_custom = _combine(_names(rules.header_patterns), "header")
        self._field_custom = _combine(_names(rules.field_patterns), "field")
        # A custom pattern with anchors or lookaround (^, $, \b, (?=, (?<!...) may match a
        # name but not the raw text around it: it disables the fast path rather than risk a
        # leak. Any JSON escape may hide a custom name ("a\/b"); of the defaults, only \u can.
        self._no_fast_path = any(_ANCHORS.search(p) for p in _names(rules.field_patterns))
        self._escape = "\\u" if self._field_custom is None else "\\"
        self._header_cache: dict[str, str | None] = {}
        self._field_cache: dict[str, str | None] = {}
        # header values the free-text scan found nothing in (Host, Accept, User-Agent ... repeat
        # on every request); only clean values are kept, so no secret is ever a key here
        self._clean_values: dict[str, None] = {}
        self._text = TextMasker(self._text_rule, self._decide, self._name_hits, self._replacement)
        # the values masked in the request being masked, per thread (see mask_record)
        self._request_secrets = threading.local()

    def is_sensitive_header(self, name: str) -> bool:
        """True when a header of this name is masked whole (the allow list wins)."""
        return self._header_rule(name) is not None

    def _header_rule(self, name: str) -> str | None:
        return self._rule(name, self._header_cache, "header")

    def _field_rule(self, name: str) -> str | None:
        try:  # the cache hit inlined: this runs once per JSON key
            return self._field_cache[name]
        except KeyError:
            return self._rule(name, self._field_cache, "field")

    def _rule(self, name: str, cache: dict[str, str | None], kind: str) -> str | None:
        if name in cache:
            return cache[name]
        rule: str | None = None
        lower = name.lower()
        custom = self._header_custom if kind == "header" else self._field_custom
        if lower in self._allow:
            pass
        elif self._field_default.search(name) or (
            kind == "header" and (lower in DEFAULT_HEADER_NAMES or self._header_default.search(name))
        ):
            rule = f"{kind}:default"
        elif custom is not None and custom.search(name):
            rule = f"{kind}:custom"
        if len(cache) >= CACHE_MAX:  # names are client-chosen: stay bounded
            cache.clear()
        cache[name] = rule
        return rule

    def _text_rule(self, name: str) -> str | None:
        rule = self._field_rule(name)
        return None if rule is None else "text:" + rule[6:]

    def _name_hits(self, text: str, low: str) -> Iterator[tuple[int, int]]:
        """Spans where a sensitive name may be in ``text`` (a superset)."""
        for m in FIELD_SCAN.finditer(low):
            yield m.span()
        yield from word_hits(text, low)
        if self._field_custom is not None:
            for m in self._field_custom.finditer(text):
                yield m.span()

    def _may_match(self, text: str, credentials: bool) -> bool:
        """The fast path: False only if no field rule (nor, with ``credentials``, a
        credential such as a Bearer token or a JWT) can match anywhere in ``text``, so that
        it needs no parsing."""
        if self._no_fast_path or self._escape in text or (not text.isascii() and _FOLDS.search(text)):
            return True  # _FOLDS may match a name only under re.I
        if (NEEDLE_OR_CREDENTIAL_SCAN if credentials else NEEDLE_SCAN).search(text.lower()):
            return True
        if credentials and (CARD_HINT.search(text) or (len(text) <= SHORT_TEXT and IBAN_HINT.search(text))):
            return True
        return self._field_custom is not None and self._field_custom.search(text) is not None

    def _decide(self, path: str, value: str, rule: str) -> str | None:
        """The replacement for a matched value, or None to keep it (the callback said KEEP)."""
        if self._callback is None:
            replacement: str | None = self._replacement
        else:
            try:
                result = self._callback(path, value, rule)
            except Exception as exc:
                log.failure("masking.callback", "masking callback raised; the value was masked", exc)
                result = None
            if result is KEEP:
                return None
            replacement = result if isinstance(result, str) else self._replacement
        secrets = getattr(self._request_secrets, "values", None)
        if secrets is not None and len(value) >= MIN_ECHO:
            secrets.append(value)
        return replacement

    def mask_text(self, text: str, prefix: str, *, strict: bool = False) -> tuple[str, list[MaskedField]]:
        """Free-text heuristics (see :mod:`spanlytics.masking.text`); ``strict`` adds the word
        after a sensitive name, as for exception text. Matches are reported at ``prefix``."""
        try:
            return self._mask_text(text, prefix, strict)
        except Exception as exc:
            log.failure("masking.text", "could not mask a text; it was replaced", exc)
            return FAILED, [MaskedField(prefix, "mask:error")]

    def _mask_text(self, text: str, prefix: str, strict: bool = False) -> tuple[str, list[MaskedField]]:
        if not self._may_match(text, credentials=True):
            return text, []
        return self._text.mask(text, prefix, text.lower(), strict)
