"""Stage 4: replace secrets in a :class:`~spanlytics.record.RequestRecord` (a pure function).

Rules are data (:class:`~spanlytics.masking.rules.MaskingRules`): extra case-insensitive
patterns that *extend* the defaults, an allow list, a replacement text and a callback that
sees ``(path, value, rule)`` and may keep or replace a matched value. What was masked is
listed in ``record.masked`` as ``MaskedField(path, rule)``, never with the value.

>>> from spanlytics.masking import MaskingRules
>>> masker = Masker(MaskingRules(allow=("author",)))
>>> masker.mask_query("author=ann&apiKey=abc", "request.query")
('author=ann&apiKey=%5Bmasked%5D', [MaskedField(path='request.query.apiKey', rule='field:default')])

Paths: ``request.headers.authorization``, ``request.query.api_key``, ``request.path.token``,
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
* ``text:credentials``: credentials anywhere in free text (``Bearer ...``, a JWT, the
  password of a URL).
* ``text:card`` / ``text:iban``: a payment card number (Luhn) or an IBAN, whatever its name.
* ``url:oauth``: an OAuth ``code=`` in a redirect's ``Location`` (or another URL header).
* ``echo:request``: a value masked in the request (or in a response header) that the
  response or the exception repeats.
* ``exception:omitted``: the exception text was replaced (``MaskingRules.exceptions="omit"``).
* ``mask:error``: masking failed; the value became ``[masked: could not be parsed]``.

Empty values (``""``, JSON ``null``) are left alone: there is nothing to hide. Masking never
raises; it fails closed. This module does no I/O.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import TypeVar
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from spanlytics.masking.bodies import BodyMasker, unique
from spanlytics.masking.rules import COMMON_WORDS, FAILED, URL_HEADERS, URL_PARAM_SCAN
from spanlytics.masking.text import splice
from spanlytics.masking.verdicts import CACHE_MAX, MIN_ECHO, log
from spanlytics.record import ExceptionInfo, Headers, MaskedField, RequestRecord, replace_record

_T = TypeVar("_T")
_ROUTE_PARAM = re.compile(r"\{(\w+)\}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{2,}(?:\.[A-Za-z0-9_\-]*){1,3}")
_URL_SAFE = re.compile(r"[A-Za-z0-9_.\-~]*")
_FRAME_LINE = re.compile(r'^\s*File "[^"\n]*", line \d+(?:, in [\w.<>]+)?$', re.M)


class Masker(BodyMasker):
    """Masks secrets in records, following the default rules extended by ``rules``.

    Pure and thread-safe: one instance serves all threads. Compiles each rule category into
    one regex and caches name verdicts (names repeat across requests).

    >>> Masker().mask_body('{"user": "ann", "pwd": "hunter2"}', "application/json", "request.body")
    ('{"user":"ann","pwd":"[masked]"}', [MaskedField(path='request.body.pwd', rule='field:default')])
    """

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
            path = take(query_masks, self.mask_path(record.path, record.route))
            if path is not record.path and base.endswith(record.path):
                base = base[: len(base) - len(record.path)] + path
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
                and path is record.path
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
                path=path,
                url=base + sep + query_in_url,
                request_body=request_body,
                response_body=response_body,
                user_agent=user_agent,
                request_content_type=request_type,
                response_content_type=response_type,
                exception=exception,
                masked=tuple(unique(masks)),
            )
        except Exception as exc:
            log.failure("masking.record", "could not mask a record; its contents were replaced", exc)
            return self._scrubbed(record)
        finally:
            local.values = None

    def mask_path(self, path: str, route: str | None) -> tuple[str, list[MaskedField]]:
        """Path segments that are secrets: a route parameter with a sensitive name
        (``/reset/{token}``, reported as ``request.path.token``) or a JWT."""
        try:
            names = route.split("/") if route and "{" in route else None
            if (names is None and "eyJ" not in path) or not path:
                return path, []
            segments = path.split("/")
            if names is not None and len(names) != len(segments):
                names = None  # a {name:path} parameter spans segments: only JWTs then
            masks: list[MaskedField] = []
            for i, segment in enumerate(segments):
                param = _ROUTE_PARAM.fullmatch(names[i]) if names is not None else None
                rule = self._field_rule(param.group(1)) if param is not None else None
                value = unquote(segment)
                if rule is None and segment.startswith("eyJ") and _JWT.fullmatch(value):
                    rule = "text:credentials"
                if rule is None or not value:
                    continue
                where = f"request.path.{param.group(1) if param is not None else i}"
                replacement = self._decide(where, value, rule)
                if replacement is not None:
                    segments[i] = quote(replacement, safe="")
                    masks.append(MaskedField(where, rule))
            return ("/".join(segments) if masks else path), masks
        except Exception as exc:
            log.failure("masking.path", "could not mask a path; it was replaced", exc)
            return "/" + quote(FAILED), [MaskedField("request.path", "mask:error")]

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
                        if len(clean) >= CACHE_MAX:  # values are client-chosen: stay bounded
                            clean.clear()
                        clean[raw] = None
                changed = changed or value is not raw
                out.append((name, value))
            return (tuple(out) if changed else headers), masks
        except Exception as exc:
            log.failure("masking.headers", "could not mask headers; their values were replaced", exc)
            return tuple((n, FAILED) for n, _ in headers), [MaskedField(prefix, "mask:error")]

    def _scrubbed(self, record: RequestRecord) -> RequestRecord:
        def scrub(headers: Headers) -> Headers:
            return tuple((n, FAILED) for n, _ in headers)

        base, sep, _ = record.url.partition("?")
        path = record.route or "/" + quote(FAILED)  # the template holds no parameter's value
        if base.endswith(record.path):
            base = base[: len(base) - len(record.path)] + path
        exception = record.exception
        if exception is not None:
            exception = dataclasses.replace(exception, message=FAILED, stacktrace=FAILED)
        return dataclasses.replace(
            record,
            path=path,
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
        return tuple(sorted((f for f in forms if len(f) >= MIN_ECHO), key=len, reverse=True))

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
