"""Stage 4: replace secrets in a :class:`~spanlytics.record.RequestRecord` (a pure function).

Rules are data (:class:`~spanlytics.masking.rules.MaskingRules`): extra case-insensitive
patterns that *extend* the defaults, an allow list, a replacement text and a callback that
sees ``(path, value, rule)`` and may keep or replace a matched value. What was masked is
listed in ``record.masked`` as ``MaskedField(path, rule)``, never with the value.

>>> masker = Masker(MaskingRules(allow=("author",)))
>>> masker.mask_query("author=ann&apiKey=abc", "request.query")
('author=ann&apiKey=%5Bmasked%5D', [MaskedField(path='request.query.apiKey', rule='field:default')])

Paths: ``request.headers.authorization``, ``request.query.api_key``,
``request.body.user.password``, ``response.body.items[0].token``, ``exception.message``.
Free-text matches (text bodies, exception message and stacktrace, other header values,
string values) are reported at the path of the whole text. Rule names (stable):

* ``header:default`` / ``header:custom``: a header name matched; the whole value is replaced.
* ``field:default`` / ``field:custom``: a query parameter, form field or JSON key (any depth)
  matched; an object or array under it is replaced whole. A JSON string value that is itself
  a JSON object or array is masked inside too (``request.body.payload.token``). FastAPI's
  validation errors echo the rejected value under ``input``: it is masked when ``loc`` names
  a sensitive field.
* ``text:default`` / ``text:custom``: free text (see :mod:`spanlytics.masking.text`), also
  inside JSON string values and query values (``{"q": "login(password: \\"x\\")"}``).
* ``text:credentials``: credentials anywhere in free text (``Bearer ...``, a JWT).
* ``echo:request``: a value masked in the request that the response or exception repeats.
* ``exception:omitted``: the exception text was replaced (``MaskingRules.exceptions="omit"``).
* ``mask:error``: masking failed; the value became ``[masked: could not be parsed]``.

Empty values (``""``, JSON ``null``) are left alone: there is nothing to hide. Masking never
raises; it fails closed. This module does no I/O.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar
from urllib.parse import quote, quote_plus, unquote_plus

from spanlytics._json import dumps_text, loads_text, may_have_rounded, stdlib_dumps_text
from spanlytics._throttle import ThrottledLogger
from spanlytics.masking import json_scan
from spanlytics.masking.rules import (
    COMMON_WORDS,
    DEFAULT_FIELD_PATTERN,
    DEFAULT_HEADER_NAMES,
    DEFAULT_HEADER_PATTERN,
    EXCEPTION_MODES,
    FAILED,
    FIELD_SCAN,
    KEEP,
    NEEDLE_OR_CREDENTIAL_SCAN,
    NEEDLE_SCAN,
    URL_HEADERS,
    URL_PARAM_SCAN,
    MaskingRules,
    word_hits,
)
from spanlytics.masking.text import TextMasker, splice
from spanlytics.record import ExceptionInfo, Headers, MaskedField, RequestRecord, replace_record

_log = ThrottledLogger(logging.getLogger("spanlytics.masking"))

_T = TypeVar("_T")
_CACHE_MAX = 4096
_FOLDS = re.compile("[\u0130\u0131\u017f\u212a]")  # equal to i/s/k under re.I, not after lower()
_OMITTED = re.compile(r"\[body omitted: [^\]]*\]")
_ANCHORS = re.compile(r"[\^$]|\\[AZbB]|\(\?<?[=!]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# What a string value needs for the free-text rules to find anything in it: a pair or a tag
# ("=", ":", "<"), a space before credentials ("Bearer x"), or a long token (a JWT, a key).
_VALUE_SHAPE = re.compile(r"[=:<]|[A-Za-z][ \t]+[A-Za-z0-9\-._~+/]{8}|[A-Za-z0-9+/=_\-.~]{16}")
_URL_SAFE = re.compile(r"[A-Za-z0-9_.\-~]*")
_FRAME_LINE = re.compile(r'^\s*File "[^"\n]*", line \d+(?:, in [\w.<>]+)?$', re.M)
_QUERY_SAFE = ";=:,/"
_MIN_ECHO = 4  # shorter masked values are too common to hunt for in the response


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

    # --- verdicts -----------------------------------------------------------------------

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
        if len(cache) >= _CACHE_MAX:  # names are client-chosen: stay bounded
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
        return self._field_custom is not None and self._field_custom.search(text) is not None

    def _decide(self, path: str, value: str, rule: str) -> str | None:
        """The replacement for a matched value, or None to keep it (the callback said KEEP)."""
        if self._callback is None:
            replacement: str | None = self._replacement
        else:
            try:
                result = self._callback(path, value, rule)
            except Exception as exc:
                _log.failure("masking.callback", "masking callback raised; the value was masked", exc)
                result = None
            if result is KEEP:
                return None
            replacement = result if isinstance(result, str) else self._replacement
        secrets = getattr(self._request_secrets, "values", None)
        if secrets is not None and len(value) >= _MIN_ECHO:
            secrets.append(value)
        return replacement

    # --- public API ---------------------------------------------------------------------

    def mask_record(self, record: RequestRecord) -> RequestRecord:
        """A copy of ``record`` with secrets replaced and ``masked`` listing what was masked.

        The request and the response headers are masked first; the values they masked are
        then also masked wherever the response, its headers or the exception repeat them
        (``echo:request``).
        """

        def take(masks: list[MaskedField], result: tuple[_T, list[MaskedField]]) -> _T:
            masks.extend(result[1])
            return result[0]

        request_masks: list[MaskedField] = []
        response_header_masks: list[MaskedField] = []
        rest: list[MaskedField] = []
        local = self._request_secrets
        secrets: list[str] = []
        local.values = secrets
        try:
            request_headers = take(
                request_masks, self.mask_headers(record.request_headers, "request.headers")
            )
            query_masks: list[MaskedField] = []
            query = take(query_masks, self.mask_query(record.query, "request.query"))
            base, sep, url_query = record.url.partition("?")
            if url_query != record.query:  # built elsewhere: mask the URL's own query too
                query_in_url = take(query_masks, self.mask_query(url_query, "request.query"))
            else:  # rebuilt from the masked query, so both agree
                query_in_url = query
            body_masks: list[MaskedField] = []
            request_body = take(
                body_masks, self.mask_body(record.request_body, record.request_content_type, "request.body")
            )
            # the record's own copies of headers, masked as the headers are
            user_agent = self._header_copy("user-agent", record.user_agent, "request", request_masks)
            request_type = self._header_copy(
                "content-type", record.request_content_type, "request", request_masks
            )
            # the response headers' masked values too: a redirect's body repeats its Location
            response_headers = take(
                response_header_masks, self.mask_headers(record.response_headers, "response.headers")
            )
            response_type = self._header_copy(
                "content-type", record.response_content_type, "response", response_header_masks
            )
            local.values = None
            echo = self._echo_forms(secrets)
            response_body = take(
                rest, self.mask_body(record.response_body, record.response_content_type, "response.body")
            )
            exception = record.exception
            if exception is not None:
                exception = self._mask_exception(exception, rest)
            if echo:
                response_headers = self._echo_headers(echo, response_headers, response_header_masks)
                response_body = self._echo(echo, response_body, "response.body", rest)
                if exception is not None:
                    exception = dataclasses.replace(
                        exception,
                        message=self._echo(echo, exception.message, "exception.message", rest) or "",
                        stacktrace=self._echo(echo, exception.stacktrace, "exception.stacktrace", rest) or "",
                    )
            masks = [
                *record.masked,
                *request_masks,
                *response_header_masks,
                *query_masks,
                *body_masks,
                *rest,
            ]
            if (
                len(masks) == len(record.masked)
                and request_headers is record.request_headers
                and response_headers is record.response_headers
                and query is record.query
                and query_in_url == url_query
                and request_body is record.request_body
                and response_body is record.response_body
                and exception == record.exception
                and user_agent == record.user_agent
                and request_type == record.request_content_type
                and response_type == record.response_content_type
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
                user_agent=user_agent,
                request_content_type=request_type,
                response_content_type=response_type,
                exception=exception,
                masked=tuple(_unique(masks)),
            )
        except Exception as exc:
            _log.failure("masking.record", "could not mask a record; its contents were replaced", exc)
            return self._scrubbed(record)
        finally:
            local.values = None

    def mask_headers(self, headers: Headers, prefix: str) -> tuple[Headers, list[MaskedField]]:
        """Replace the values of sensitive headers; scan the others as free text (a Referer
        may carry ``?token=...``, any value a JWT). Paths are ``{prefix}.{lower-case name}``."""
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
                    path = f"{prefix}.{name.lower()}"
                    found: list[MaskedField] = []
                    if name.lower() in URL_HEADERS:  # a redirect's ?code=
                        value = self._mask_url_params(raw, path, found)
                    value, text_found = self._mask_text(value, path)
                    found += text_found
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
        """Mask a query string (``a=1&token=x``); pieces that are not masked stay byte-identical.

        Only ``&`` separates pairs, as Starlette and Werkzeug parse them: ``a=1;token=x`` is
        one value of ``a``, which is then masked as free text.
        """
        try:
            return self._mask_pairs(query, prefix)
        except Exception as exc:
            _log.failure("masking.query", "could not mask a query string; it was replaced", exc)
            return quote(FAILED), [MaskedField(prefix, "mask:error")]

    def mask_body(
        self, text: str | None, content_type: str | None, prefix: str
    ) -> tuple[str | None, list[MaskedField]]:
        """Mask a body by its shape: JSON (also truncated or lenient), form-urlencoded, or
        free text."""
        if not text or _OMITTED.fullmatch(text):
            return text, []
        try:
            return self._mask_body(text, content_type, prefix)
        except Exception as exc:
            _log.failure("masking.body", "could not mask a body; it was replaced", exc)
            return FAILED, [MaskedField(prefix, "mask:error")]

    def mask_text(self, text: str, prefix: str, *, strict: bool = False) -> tuple[str, list[MaskedField]]:
        """Free-text heuristics (see :mod:`spanlytics.masking.text`); ``strict`` adds the word
        after a sensitive name, as for exception text. Matches are reported at ``prefix``."""
        try:
            return self._mask_text(text, prefix, strict)
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
            user_agent=None if record.user_agent is None else FAILED,
            request_content_type=None if record.request_content_type is None else FAILED,
            response_content_type=None if record.response_content_type is None else FAILED,
            exception=exception,
            masked=(MaskedField("record", "mask:error"),),
        )

    def _header_copy(self, name: str, value: str | None, side: str, masks: list[MaskedField]) -> str | None:
        if not value:
            return value
        masked, found = self.mask_headers(((name, value),), f"{side}.headers")
        masks += found
        return masked[0][1]

    def _mask_exception(self, exception: ExceptionInfo, masks: list[MaskedField]) -> ExceptionInfo:
        if self._exceptions == "omit":
            frames = "\n".join(m.group(0).strip() for m in _FRAME_LINE.finditer(exception.stacktrace))
            if exception.message:
                masks.append(MaskedField("exception.message", "exception:omitted"))
            if exception.stacktrace:
                masks.append(MaskedField("exception.stacktrace", "exception:omitted"))
            return dataclasses.replace(
                exception,
                message=self._replacement if exception.message else "",
                stacktrace=(frames + "\n" if frames else "") + self._replacement
                if exception.stacktrace
                else "",
            )
        strict = self._exceptions == "strict"
        message, found = self.mask_text(exception.message, "exception.message", strict=strict)
        masks += found
        stacktrace, found = self.mask_text(exception.stacktrace, "exception.stacktrace", strict=strict)
        masks += found
        if message is exception.message and stacktrace is exception.stacktrace:
            return exception
        return dataclasses.replace(exception, message=message, stacktrace=stacktrace)

    @staticmethod
    def _echo_forms(secrets: list[str]) -> tuple[str, ...]:
        """The masked request values as a response may quote them: raw, JSON-escaped or
        URL-encoded, and a credential without its scheme; longest first."""
        forms: set[str] = set()
        for value in secrets:
            if value.lower() in COMMON_WORDS:
                continue
            forms.add(value)
            credentials = value.rsplit(None, 1)[-1]  # "Bearer abc" may come back as "abc"
            if len(credentials) >= 8:
                forms.add(credentials)
            if not value.isascii() or '"' in value or "\\" in value or not value.isprintable():
                forms.add(json.dumps(value)[1:-1])
                forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
            if not _URL_SAFE.fullmatch(value):
                forms.add(quote_plus(value))
        return tuple(sorted((f for f in forms if len(f) >= _MIN_ECHO), key=len, reverse=True))

    def _echo(
        self, forms: tuple[str, ...], text: str | None, path: str, masks: list[MaskedField]
    ) -> str | None:
        """``text`` with each form replaced where it stands alone (not inside a longer word
        or number); ``str.__contains__`` first, as most texts repeat nothing."""
        if not text:
            return text
        found = [form for form in forms if form in text]
        if not found:
            return text
        pattern = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, found)) + r")(?![A-Za-z0-9])")
        out, count = pattern.subn(lambda _: self._replacement, text)
        if count:
            masks.append(MaskedField(path, "echo:request"))
        return out

    def _echo_headers(self, forms: tuple[str, ...], headers: Headers, masks: list[MaskedField]) -> Headers:
        out = tuple(
            (n, self._echo(forms, v, f"response.headers.{n.lower()}", masks) or v) for n, v in headers
        )
        return out if out != headers else headers

    def _mask_url_params(self, url: str, path: str, masks: list[MaskedField]) -> str:
        edits = []
        for m in URL_PARAM_SCAN.finditer(url):
            replacement = self._decide(path, unquote_plus(m.group(1)), "url:oauth")
            if replacement is not None:
                edits.append((m.start(1), m.end(1), quote_plus(replacement)))
                masks.append(MaskedField(path, "url:oauth"))
        return splice(url, edits) if edits else url

    def _mask_pairs(self, text: str, prefix: str) -> tuple[str, list[MaskedField]]:
        # Only "&" separates pairs, as in Starlette, Werkzeug and urllib since Python 3.10:
        # "a=1;b=2" is one value of "a", checked as free text below.
        pieces = text.split("&")
        masks: list[MaskedField] = []
        for i, piece in enumerate(pieces):
            name, _, value = piece.partition("=")
            if not value:
                continue
            decoded = unquote_plus(name)
            path = f"{prefix}.{decoded}"
            rule = self._field_rule(decoded)
            if rule is None:  # an innocent name may still hold a credential (a JWT, "Bearer x")
                plain = unquote_plus(value)
                if self._may_match(plain, credentials=True):
                    masked, found = self._mask_text(plain, path)
                    if found:  # the usual separators stay readable: "a=1;token=%5Bmasked%5D"
                        pieces[i] = f"{name}={quote_plus(masked, safe=_QUERY_SAFE)}"
                        masks += found
                continue
            replacement = self._decide(path, unquote_plus(value), rule)
            if replacement is not None:
                pieces[i] = f"{name}={quote_plus(replacement)}"
                masks.append(MaskedField(path, rule))
        return "&".join(pieces), masks

    def _mask_body(self, text: str, content_type: str | None, prefix: str) -> tuple[str, list[MaskedField]]:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        is_json = media.endswith(("/json", "+json"))
        lead, json_text = json_scan.split_prefix(text)
        looks_json = json_text[:1] in ("{", "[")
        if is_json or looks_json:
            if not self._may_match(text, credentials=True):
                return text, []
            masks: list[MaskedField] = []
            if looks_json:
                try:
                    out, keys = self._mask_json(json_text, prefix, masks)
                except (ValueError, RecursionError):  # malformed, truncated or too deep
                    masks = []
                else:
                    if out is not None:
                        return lead + out, masks
                    # parsed and clean: keep the text only if it holds no more keys than the
                    # parser saw (a duplicate key can hide an earlier secret from the parser)
                    if json_scan.key_count(json_text) == keys:
                        return text, []
            out, masks, saw_keys = json_scan.scan_json(text, prefix, self._field_rule, self._decide)
            if saw_keys or is_json:
                out, found = self._mask_text(out, prefix)
                return out, _unique(masks + found)
        if media == "application/x-www-form-urlencoded":
            return self._mask_pairs(text, prefix)
        return self._mask_text(text, prefix)

    def _mask_json(self, text: str, prefix: str, masks: list[MaskedField]) -> tuple[str | None, int]:
        """Parse, mask and write back a JSON text: ``(text, keys seen)``, the text None when
        nothing in it was masked.

        Raises ``ValueError`` or ``RecursionError`` for malformed, truncated or too deep JSON.
        """
        found: list[MaskedField] = []
        parsed = loads_text(text)
        keys = [0]
        self._walk(parsed, prefix, found, keys)
        if not found:
            return None, keys[0]
        out = dumps_text(parsed)
        if may_have_rounded(out):  # orjson read a huge integer as a float: parse it exactly
            found = []
            parsed = json.loads(text)
            self._walk(parsed, prefix, found, [0])
            out = stdlib_dumps_text(parsed)
        if "\\u" in text and _SURROGATE.search(out):  # a lone "\ud800" must stay escaped
            out = json.dumps(parsed, separators=(",", ":"))
        masks += found
        return out, keys[0]

    def _walk(self, node: object, path: str, masks: list[MaskedField], keys: list[int]) -> None:
        """Mask ``node`` (fresh from json.loads, so ours to change) in place; ``keys[0]``
        counts the keys seen.

        json.loads only makes plain dicts, lists and scalars, so exact ``type`` checks are
        safe; this loop runs for every key of every masked body, so it stays lean.
        """
        if type(node) is dict:
            keys[0] += len(node)
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
                    self._walk(value, f"{path}.{key}", masks, keys)
                elif kind is str:
                    inner = self._string_value(value, f"{path}.{key}", masks, keys)
                    if inner is not None:
                        node[key] = inner
            if "input" in node and type(node.get("loc")) is list:
                self._validation_input(node, path, masks)
        elif type(node) is list:
            for index, value in enumerate(node):
                kind = type(value)
                if kind is dict or kind is list:
                    self._walk(value, f"{path}[{index}]", masks, keys)
                elif kind is str:
                    inner = self._string_value(value, f"{path}[{index}]", masks, keys)
                    if inner is not None:
                        node[index] = inner

    def _string_value(self, value: str, path: str, masks: list[MaskedField], keys: list[int]) -> str | None:
        """A string value masked inside (JSON sent as a string, or free text that holds a
        credential), or None when it stays."""
        if value[:1] in ("{", "["):  # JSON sent as a string
            try:
                inner_masks: list[MaskedField] = []
                parsed = loads_text(value)
            except (ValueError, RecursionError):
                pass
            else:
                try:
                    self._walk(parsed, path, inner_masks, keys)
                except RecursionError:
                    inner_masks = []
                else:
                    if not inner_masks:
                        return None
                    masks += inner_masks
                    out = dumps_text(parsed)
                    if may_have_rounded(out) or _SURROGATE.search(out):
                        return self._json_in_string_exact(value, path, masks)
                    return out
        if (
            len(value) < 8
            or _VALUE_SHAPE.search(value) is None
            or not self._may_match(value, credentials=True)
        ):
            return None
        out, found = self._mask_text(value, path)
        if not found:
            return None
        masks += found
        return out

    def _json_in_string_exact(self, value: str, path: str, masks: list[MaskedField]) -> str | None:
        try:
            return self._mask_json(value, path, [])[0]
        except (ValueError, RecursionError):
            return FAILED

    def _validation_input(self, node: dict[str, object], path: str, masks: list[MaskedField]) -> None:
        """FastAPI/pydantic validation errors echo the rejected value under ``input``: mask
        it when ``loc`` names a sensitive field (``["body", "password"]``)."""
        value = node["input"]
        loc = node["loc"]
        if value in (None, "", self._replacement) or not isinstance(loc, list):
            return
        for part in loc:
            rule = self._field_rule(part) if isinstance(part, str) else None
            if rule is not None:
                child = f"{path}.input"
                raw = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
                replacement = self._decide(child, raw, rule)
                if replacement is not None:
                    node["input"] = replacement
                    masks.append(MaskedField(child, rule))
                return

    def _scan_json(self, text: str, prefix: str) -> tuple[str, list[MaskedField], bool]:
        """The tolerant token scanner (see :func:`spanlytics.masking.json_scan.scan_json`)."""
        return json_scan.scan_json(text, prefix, self._field_rule, self._decide)

    def _mask_text(self, text: str, prefix: str, strict: bool = False) -> tuple[str, list[MaskedField]]:
        if not self._may_match(text, credentials=True):
            return text, []
        return self._text.mask(text, prefix, text.lower(), strict)
