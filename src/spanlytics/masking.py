"""Stage 4: replace secrets in a :class:`~spanlytics.record.RequestRecord` (a pure function).

Rules are data (:class:`MaskingRules`): extra case-insensitive patterns that *extend* the
defaults, an allow list, a replacement text and a callback that sees ``(path, value, rule)``
and may keep or replace a matched value. What was masked is listed in ``record.masked`` as
``MaskedField(path, rule)``, never with the value.

>>> masker = Masker(MaskingRules(allow=("author",)))
>>> masker.mask_query("author=ann&apiKey=abc", "request.query")
('author=ann&apiKey=%5Bmasked%5D', [MaskedField(path='request.query.apiKey', rule='field:default')])

Paths: ``request.headers.authorization``, ``request.query.api_key``,
``request.body.user.password``, ``response.body.items[0].token``, ``exception.message``.
Free-text matches (text bodies, exception message and stacktrace, other header values) are
reported at the path of the whole text. Rule names (stable):

* ``header:default`` / ``header:custom``: a header name matched (the custom rule comes from
  ``header_patterns``); the whole value is replaced.
* ``field:default`` / ``field:custom``: a query parameter, form field or JSON key (any depth)
  matched; an object or array under it is replaced whole. A JSON string value that is itself
  a JSON object or array is masked inside too (``request.body.payload.token``).
* ``text:default`` / ``text:custom``: free text ``name=value``, ``name: value``,
  ``"name": "value"``, ``name="value"`` or ``<name>value</name>`` with a sensitive name.
* ``text:credentials``: ``Bearer <token>`` / ``Basic <credentials>`` anywhere in free text.
* ``mask:error``: masking failed; the value became ``[masked: could not be parsed]``.

Empty values (``""``, JSON ``null``) are left alone: there is nothing to hide. Masking never
raises; it fails closed. This module does no I/O.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, TypeAlias, TypeVar
from urllib.parse import quote, quote_plus, unquote_plus

from spanlytics._json import dumps_text, loads_text, may_have_rounded, stdlib_dumps_text
from spanlytics._throttle import ThrottledLogger
from spanlytics.record import Headers, MaskedField, RequestRecord, replace_record

__all__ = [
    "DEFAULT_FIELD_PATTERN",
    "DEFAULT_HEADER_NAMES",
    "DEFAULT_HEADER_PATTERN",
    "FAILED",
    "KEEP",
    "Masker",
    "MaskingCallback",
    "MaskingRules",
]

_log = ThrottledLogger(logging.getLogger("spanlytics.masking"))


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

FAILED: Final = "[masked: could not be parsed]"

DEFAULT_HEADER_NAMES: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
DEFAULT_HEADER_PATTERN: Final = r"auth|api[-_]?key|secret|token|session|csrf|xsrf"
DEFAULT_FIELD_PATTERN: Final = (
    r"password|passwd|pwd|secret|token|auth|api[-_ ]?key|credential|private[-_ ]?key"
    r"|card[-_ ]?number|cvv|cvc|ccv|ssn|session|cookie"
)


@dataclass(frozen=True)
class MaskingRules:
    """What to mask beyond the defaults, and how.

    ``header_patterns`` / ``field_patterns``: extra regexes (``re.search``, case-insensitive)
    for header names / query, form and JSON field names. ``allow``: exact names, any case,
    never masked nor shown to the callback. ``callback(path, value, rule)``: see
    :data:`MaskingCallback`. ``replacement``: the text that replaces a masked value.

    >>> masker = Masker(MaskingRules(field_patterns=(r"^pin$",), replacement="***"))
    >>> masker.mask_query("pin=1234&pinned=1", "request.query")
    ('pin=%2A%2A%2A&pinned=1', [MaskedField(path='request.query.pin', rule='field:custom')])
    """

    header_patterns: tuple[str, ...] = ()
    field_patterns: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    callback: MaskingCallback | None = None
    replacement: str = "[masked]"


_T = TypeVar("_T")
_CACHE_MAX = 4096
# DEFAULT_FIELD_PATTERN factored by first letter, for lower-cased text: ~20x faster than re.I.
_FIELD_SCAN = re.compile(
    r"p(?:assw(?:or)?d|wd|rivate[-_ ]?key)|s(?:ecret|sn|ession)|token|a(?:uth|pi[-_ ]?key)"
    r"|c(?:redential|ard[-_ ]?number|vv|vc|cv|ookie)"
)
_FOLDS = re.compile("[\u0130\u0131\u017f\u212a]")  # equal to i/s/k under re.I, not after lower()
_OMITTED = re.compile(r"\[body omitted: [^\]]*\]")
_ANCHORS = re.compile(r"[\^$]|\\[AZbB]|\(\?<?[=!]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UESC = re.compile(r"\\u([0-9a-fA-F]{4})")
# Covers all of a text after its leading whitespace: a (maybe unterminated) string, a
# punctuation mark or a run of anything else, each with its trailing whitespace.
_JSON_TOKEN = re.compile(r'(?:"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[{}\[\]:,]|[^\s"{}\[\]:,]+)\s*', re.S)
_STRUCTURE = re.compile(r'[{}\[\],]|"(?=:)')  # over one character per token: keys and structure
_DEPTH: Final = {"{": 1, "[": 1, "}": -1, "]": -1}
_PAIR_SPLIT = re.compile(r"([&;])")
_CREDENTIALS = re.compile(r"\b(?:bearer|basic)[ \t]+([A-Za-z0-9\-._~+/]+=*)", re.I)
_TEXT_PAIR = re.compile(
    r"""(?<![\w.\-<])(?<!</)(?:(["'])([^"'\n<>=:]{1,64})\1|([A-Za-z_][\w.\-]*))[ \t]*[=:][ \t]*"""
)
_TEXT_VALUE = re.compile(
    r""""(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?|\[[^\]\s]*\]?"""
    r"""|(?:(?:bearer|basic)[ \t]+)?[^\s&,;"'<>(){}\[\]]+""",
    re.I,
)
_XML_OPEN = re.compile(r"<([A-Za-z_][\w:.\-]*)(?:\s[^<>]*)?>")


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


def _splice(text: str, edits: list[tuple[int, int, str]]) -> str:
    pieces: list[str] = []
    last = 0
    for start, end, replacement in edits:
        pieces += (text[last:start], replacement)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _decode_key(inner: str) -> str:
    if "\\" not in inner:
        return inner
    try:
        return str(json.loads(f'"{inner}"'))
    except ValueError:
        return _UESC.sub(lambda m: chr(int(m.group(1), 16)), inner)


def _frames_path(prefix: str, stack: list[str | int | None]) -> str:
    return prefix + "".join(f"[{f}]" if isinstance(f, int) else f".{'?' if f is None else f}" for f in stack)


def _unique(masks: list[MaskedField]) -> list[MaskedField]:
    return list(dict.fromkeys(masks))


class Masker:
    """Masks secrets in records, following the default rules extended by ``rules``.

    Pure and thread-safe: one instance serves all threads. Compiles each rule category into
    one regex and caches name verdicts (names repeat across requests).

    >>> Masker().mask_body('{"user": "ann", "pwd": "hunter2"}', "application/json", "request.body")
    ('{"user":"ann","pwd":"[masked]"}', [MaskedField(path='request.body.pwd', rule='field:default')])
    """

    def __init__(self, rules: MaskingRules | None = None) -> None:
        rules = rules or MaskingRules()
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

    # --- verdicts -----------------------------------------------------------------------

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
        if len(cache) >= _CACHE_MAX:  # names are client-chosen: stay bounded
            cache.clear()
        cache[name] = rule
        return rule

    def _text_rule(self, name: str) -> str | None:
        rule = self._field_rule(name)
        return None if rule is None else "text:" + rule[6:]

    def _may_match(self, text: str, credentials: bool) -> bool:
        """The fast path: False only if no field rule (nor, with ``credentials``, a
        Bearer/Basic) can match anywhere in ``text``, so that it needs no parsing."""
        if self._no_fast_path or self._escape in text or (not text.isascii() and _FOLDS.search(text)):
            return True  # _FOLDS may match a name only under re.I
        low = text.lower()
        if _FIELD_SCAN.search(low) or (credentials and ("bearer" in low or "basic" in low)):
            return True
        return self._field_custom is not None and self._field_custom.search(text) is not None

    def _decide(self, path: str, value: str, rule: str) -> str | None:
        """The replacement for a matched value, or None to keep it (the callback said KEEP)."""
        if self._callback is None:
            return self._replacement
        try:
            result = self._callback(path, value, rule)
        except Exception as exc:
            _log.failure("masking.callback", "masking callback raised; the value was masked", exc)
            return self._replacement
        if result is KEEP:
            return None
        return result if isinstance(result, str) else self._replacement

    # --- public API ---------------------------------------------------------------------

    def mask_record(self, record: RequestRecord) -> RequestRecord:
        """A copy of ``record`` with secrets replaced and ``masked`` listing what was masked."""
        masks: list[MaskedField] = list(record.masked)

        def take(result: tuple[_T, list[MaskedField]]) -> _T:
            masks.extend(result[1])
            return result[0]

        try:
            request_headers = take(self.mask_headers(record.request_headers, "request.headers"))
            response_headers = take(self.mask_headers(record.response_headers, "response.headers"))
            query = take(self.mask_query(record.query, "request.query"))
            base, sep, url_query = record.url.partition("?")
            if url_query != record.query:  # built elsewhere: mask the URL's own query too
                query_in_url = take(self.mask_query(url_query, "request.query"))
            else:  # rebuilt from the masked query, so both agree
                query_in_url = query
            request_body = take(
                self.mask_body(record.request_body, record.request_content_type, "request.body")
            )
            response_body = take(
                self.mask_body(record.response_body, record.response_content_type, "response.body")
            )
            exception = record.exception
            if exception is not None:
                exception = dataclasses.replace(
                    exception,
                    message=take(self.mask_text(exception.message, "exception.message")),
                    stacktrace=take(self.mask_text(exception.stacktrace, "exception.stacktrace")),
                )
            if (
                len(masks) == len(record.masked)
                and request_headers is record.request_headers
                and response_headers is record.response_headers
                and query is record.query
                and query_in_url == url_query
                and request_body is record.request_body
                and response_body is record.response_body
                and exception == record.exception
            ):
                return record  # nothing to hide: no copy (records are immutable)
            return replace_record(
                record,
                request_headers=request_headers,
                response_headers=response_headers,
                query=query,
                url=base + sep + query_in_url,
                request_body=request_body,
                response_body=response_body,
                exception=exception,
                masked=tuple(_unique(masks)),
            )
        except Exception as exc:
            _log.failure("masking.record", "could not mask a record; its contents were replaced", exc)
            return self._scrubbed(record)

    def mask_headers(self, headers: Headers, prefix: str) -> tuple[Headers, list[MaskedField]]:
        """Replace the values of sensitive headers; scan the others as free text (a Referer
        may carry ``?token=...``). Paths are ``{prefix}.{lower-case name}``."""
        try:
            out: list[tuple[str, str]] = []
            masks: list[MaskedField] = []
            clean = self._clean_values
            changed = False
            for name, raw in headers:
                rule = self._header_rule(name)
                value = raw
                if not raw or (raw in clean and rule is None) or name.lower() in self._allow:
                    pass
                elif rule is not None:
                    path = f"{prefix}.{name.lower()}"
                    replacement = self._decide(path, raw, rule)
                    if replacement is not None:
                        value = replacement
                        masks.append(MaskedField(path, rule))
                else:
                    value, found = self._mask_text(raw, f"{prefix}.{name.lower()}")
                    if found:
                        masks += found
                    elif value == raw:
                        if len(clean) >= _CACHE_MAX:  # values are client-chosen: stay bounded
                            clean.clear()
                        clean[raw] = None
                changed = changed or value is not raw
                out.append((name, value))
            return (tuple(out) if changed else headers), masks
        except Exception as exc:
            _log.failure("masking.headers", "could not mask headers; their values were replaced", exc)
            return tuple((n, FAILED) for n, _ in headers), [MaskedField(prefix, "mask:error")]

    def mask_query(self, query: str, prefix: str) -> tuple[str, list[MaskedField]]:
        """Mask a query string (``a=1&token=x``); pieces that are not masked stay byte-identical."""
        try:
            return self._mask_pairs(query, prefix)
        except Exception as exc:
            _log.failure("masking.query", "could not mask a query string; it was replaced", exc)
            return quote(FAILED), [MaskedField(prefix, "mask:error")]

    def mask_body(
        self, text: str | None, content_type: str | None, prefix: str
    ) -> tuple[str | None, list[MaskedField]]:
        """Mask a body by its shape: JSON (also truncated), form-urlencoded, or free text."""
        if not text or _OMITTED.fullmatch(text):
            return text, []
        try:
            return self._mask_body(text, content_type, prefix)
        except Exception as exc:
            _log.failure("masking.body", "could not mask a body; it was replaced", exc)
            return FAILED, [MaskedField(prefix, "mask:error")]

    def mask_text(self, text: str, prefix: str) -> tuple[str, list[MaskedField]]:
        """Free-text heuristic: ``name=value``, ``name: value``, ``"name": "value"``,
        ``name="value"``, ``<name>value</name>`` for sensitive names, and
        ``Bearer``/``Basic`` credentials anywhere. Matches are reported at ``prefix``."""
        try:
            return self._mask_text(text, prefix)
        except Exception as exc:
            _log.failure("masking.text", "could not mask a text; it was replaced", exc)
            return FAILED, [MaskedField(prefix, "mask:error")]

    # --- internals ----------------------------------------------------------------------

    def _scrubbed(self, record: RequestRecord) -> RequestRecord:
        def scrub(headers: Headers) -> Headers:
            return tuple((n, FAILED) for n, _ in headers)

        base, sep, _ = record.url.partition("?")
        exception = record.exception
        if exception is not None:
            exception = dataclasses.replace(exception, message=FAILED, stacktrace=FAILED)
        return dataclasses.replace(
            record,
            request_headers=scrub(record.request_headers),
            response_headers=scrub(record.response_headers),
            query=quote(FAILED) if record.query else "",
            url=base + (sep and "?" + quote(FAILED)),
            request_body=None if record.request_body is None else FAILED,
            response_body=None if record.response_body is None else FAILED,
            exception=exception,
            masked=(MaskedField("record", "mask:error"),),
        )

    def _mask_pairs(self, text: str, prefix: str) -> tuple[str, list[MaskedField]]:
        # ';' separates too (older servers split on it): fail closed on detection, while
        # the re-joined text keeps every separator as it was.
        pieces = _PAIR_SPLIT.split(text)
        masks: list[MaskedField] = []
        for i in range(0, len(pieces), 2):
            name, _, value = pieces[i].partition("=")
            if not value:
                continue
            decoded = unquote_plus(name)
            rule = self._field_rule(decoded)
            if rule is None:
                continue
            path = f"{prefix}.{decoded}"
            replacement = self._decide(path, unquote_plus(value), rule)
            if replacement is not None:
                pieces[i] = f"{name}={quote_plus(replacement)}"
                masks.append(MaskedField(path, rule))
        return "".join(pieces), masks

    def _mask_body(self, text: str, content_type: str | None, prefix: str) -> tuple[str, list[MaskedField]]:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        is_json = media.endswith(("/json", "+json"))
        looks_json = text.lstrip()[:1] in ("{", "[")
        if is_json or looks_json:
            # Only the text heuristic looks for Bearer/Basic, and JSON that looks like JSON
            # never reaches it.
            if not self._may_match(text, credentials=not (is_json and looks_json)):
                return text, []
            masks: list[MaskedField] = []
            try:
                out = self._mask_json(text, prefix, masks)
            except (ValueError, RecursionError):  # malformed, truncated or too deep
                masks = []
            else:
                return (text if out is None else out), masks
            if looks_json:
                out, masks, saw_keys = self._scan_json(text, prefix)
                if saw_keys or is_json:
                    return out, masks
        if media == "application/x-www-form-urlencoded":
            return self._mask_pairs(text, prefix)
        return self._mask_text(text, prefix)

    def _mask_json(self, text: str, prefix: str, masks: list[MaskedField]) -> str | None:
        """Parse, mask and write back a JSON text; None when nothing in it was masked.

        Raises ``ValueError`` or ``RecursionError`` for malformed, truncated or too deep JSON.
        """
        found: list[MaskedField] = []
        parsed = loads_text(text)
        self._walk(parsed, prefix, found)
        if not found:
            return None
        out = dumps_text(parsed)
        if may_have_rounded(out):  # orjson read a huge integer as a float: parse it exactly
            found = []
            parsed = json.loads(text)
            self._walk(parsed, prefix, found)
            out = stdlib_dumps_text(parsed)
        if "\\u" in text and _SURROGATE.search(out):  # a lone "\ud800" must stay escaped
            out = json.dumps(parsed, separators=(",", ":"))
        masks += found
        return out

    def _walk(self, node: object, path: str, masks: list[MaskedField]) -> None:
        """Mask ``node`` (fresh from json.loads, so ours to change) in place.

        json.loads only makes plain dicts, lists and scalars, so exact ``type`` checks are
        safe; this loop runs for every key of every masked body, so it stays lean.
        """
        if type(node) is dict:
            cache = self._field_cache
            for key, value in node.items():  # same keys: assigning during the loop is safe
                try:
                    rule = cache[key]
                except KeyError:
                    rule = self._rule(key, cache, "field")
                if rule is not None and value is not None and value != "":
                    child = f"{path}.{key}"
                    raw = value if type(value) is str else json.dumps(value, ensure_ascii=False)
                    replacement = self._decide(child, raw, rule)
                    if replacement is not None:
                        masks.append(MaskedField(child, rule))
                        node[key] = replacement
                        continue
                kind = type(value)
                if kind is dict or kind is list:  # KEEP on a container still masks inside it
                    self._walk(value, f"{path}.{key}", masks)
                elif kind is str and value[:1] in ("{", "["):  # JSON sent as a string
                    inner = self._json_in_string(value, f"{path}.{key}", masks)
                    if inner is not None:
                        node[key] = inner
        elif type(node) is list:
            for index, value in enumerate(node):
                kind = type(value)
                if kind is dict or kind is list:
                    self._walk(value, f"{path}[{index}]", masks)
                elif kind is str and value[:1] in ("{", "["):
                    inner = self._json_in_string(value, f"{path}[{index}]", masks)
                    if inner is not None:
                        node[index] = inner

    def _json_in_string(self, value: str, path: str, masks: list[MaskedField]) -> str | None:
        try:
            return self._mask_json(value, path, masks)
        except (ValueError, RecursionError):
            return None

    def _scan_json(self, text: str, prefix: str) -> tuple[str, list[MaskedField], bool]:
        """Tolerant scan of malformed or truncated JSON: mask the value after any sensitive
        ``"key":``, a scalar token or a container up to its close (or the end of the text)."""
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
            if char == '"':  # a key
                key = _decode_key(toks[i].rstrip()[1:-1])
                in_object = bool(stack) and not isinstance(stack[-1], int)
                if in_object:
                    stack[-1] = key
                rule = self._field_rule(key)
                first = i + 2
                if rule is None or first >= len(toks) or kinds[first] in ",:}]":
                    continue
                last = first
                if kinds[first] in "{[":  # to the matching close, or the end
                    depth, last = 0, len(toks) - 1
                    for j, kind in enumerate(kinds[first:], first):
                        depth += _DEPTH.get(kind, 0)
                        if depth == 0:
                            last = j
                            break
                raw = "".join(toks[first : last + 1])
                value = raw.rstrip()
                tail = raw[len(value) :]  # whitespace after the value, kept
                if value in ('""', "null"):
                    continue
                if value[0] == '"':
                    value = _decode_key(value[1:-1] if value.endswith('"') and len(value) > 1 else value[1:])
                path = _frames_path(prefix, stack) + ("" if in_object else f".{key}")
                replacement = self._decide(path, value, rule)
                if replacement is not None:
                    toks[first] = json.dumps(replacement, ensure_ascii=False) + tail
                    toks[first + 1 : last + 1] = [""] * (last - first)
                    masks.append(MaskedField(path, rule))
                    skip = last + 1
            elif char in "{[":
                stack.append(None if char == "{" else 0)
            elif char == ",":
                if stack:
                    top = stack[-1]
                    stack[-1] = top + 1 if isinstance(top, int) else None
            elif stack:
                stack.pop()
        return text[:lead] + "".join(toks), masks, '":' in kinds

    def _mask_text(self, text: str, prefix: str) -> tuple[str, list[MaskedField]]:
        if not self._may_match(text, credentials=True):
            return text, []
        masks: list[MaskedField] = []
        # Pairs before credentials, so "Authorization: Bearer x" is masked whole.
        for finder, locate in (
            (_XML_OPEN, self._xml_value),
            (_TEXT_PAIR, self._pair_value),
            (_CREDENTIALS, self._credentials_value),
        ):
            text = self._text_pass(text, prefix, masks, finder, locate)
        return text, _unique(masks)

    def _text_pass(
        self,
        text: str,
        prefix: str,
        masks: list[MaskedField],
        finder: re.Pattern[str],
        locate: Callable[[str, re.Match[str]], tuple[str, int, int] | None],
    ) -> str:
        """One heuristic over ``text``: ``finder`` finds candidates, ``locate`` says which
        rule matched and where the value is (or None)."""
        edits: list[tuple[int, int, str]] = []
        last = 0
        for m in finder.finditer(text):
            if m.start() < last:  # inside a value masked already
                continue
            found = locate(text, m)
            if found is None:
                continue
            rule, start, end = found
            value = text[start:end]
            if not value.strip() or value == self._replacement:
                continue
            replacement = self._decide(prefix, value, rule)
            if replacement is not None:
                edits.append((start, end, replacement))
                masks.append(MaskedField(prefix, rule))
                last = end
        return _splice(text, edits) if edits else text

    def _xml_value(self, text: str, m: re.Match[str]) -> tuple[str, int, int] | None:
        rule = self._text_rule(m.group(1))
        if rule is None:
            return None
        close = text.find(f"</{m.group(1)}", m.end())
        return rule, m.end(), close if close >= 0 else len(text)  # unclosed: to the end

    def _pair_value(self, text: str, m: re.Match[str]) -> tuple[str, int, int] | None:
        rule = self._text_rule(m.group(2) or m.group(3))
        value = _TEXT_VALUE.match(text, m.end())
        if rule is None or value is None:
            return None
        start, end = value.span()
        quote_char = text[start]
        if quote_char in "\"'":
            start += 1
            if end > start and text[end - 1] == quote_char:
                end -= 1
        return rule, start, end

    @staticmethod
    def _credentials_value(text: str, m: re.Match[str]) -> tuple[str, int, int] | None:
        return "text:credentials", *m.span(1)
