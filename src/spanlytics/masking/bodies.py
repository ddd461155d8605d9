"""Query strings and bodies: form pairs, JSON (parsed, or scanned when no parser accepts
it, and checked against its text), free text. The middle layer of
:class:`~spanlytics.masking.Masker`; it does no I/O.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

from spanlytics._json import dumps_text, loads_text, may_have_rounded, stdlib_dumps_text
from spanlytics.masking import json_scan
from spanlytics.masking.rules import FAILED, NEEDLE_OR_CREDENTIAL_SCAN
from spanlytics.masking.text import CARD_HINT, IBAN_HINT
from spanlytics.masking.verdicts import SHORT_TEXT, RuleBook, log
from spanlytics.record import MaskedField

_OMITTED = re.compile(r"\[body omitted: [^\]]*\]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# What a string value needs for the free-text rules to find anything in it: a pair or a tag
# ("=", ":", "<"), a space before credentials ("Bearer x"), or a long token (a JWT, a key).
_VALUE_SHAPE = re.compile(r"[=:<]|[A-Za-z][ \t]+[A-Za-z0-9\-._~+/]{8}|[A-Za-z0-9+/=_\-.~]{16}|\d{4}[ -]\d{4}")
_QUERY_SAFE = ";=:,/"
_MIN_TEXT = 8  # shorter string values hold no credential the free-text rules would find

_Later = tuple[Any, "str | int", str, int]
"""A string value to check as free text: its container, key or index, the container's path,
and how many masks the walk had found when it met it."""


def unique(masks: list[MaskedField]) -> list[MaskedField]:
    return list(dict.fromkeys(masks))


class BodyMasker(RuleBook):
    """Masks query strings and bodies by their shape."""

    def mask_query(self, query: str, prefix: str) -> tuple[str, list[MaskedField]]:
        """Mask a query string (``a=1&token=x``); pieces that are not masked stay byte-identical.

        Only ``&`` separates pairs, as Starlette and Werkzeug parse them: ``a=1;token=x`` is
        one value of ``a``, which is then masked as free text.
        """
        try:
            return self._mask_pairs(query, prefix)
        except Exception as exc:
            log.failure("masking.query", "could not mask a query string; it was replaced", exc)
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
            log.failure("masking.body", "could not mask a body; it was replaced", exc)
            return FAILED, [MaskedField(prefix, "mask:error")]

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
            # Parsing first: the parser and the walk (names by cached verdicts, string values
            # scanned together) cost less than one scan of the whole text would.
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
                    if json_scan.holds_keys(json_text, keys):
                        return text, []
            if not self._may_match(text, credentials=True):
                return text, []
            out, masks, saw_keys = json_scan.scan_json(text, prefix, self._field_rule, self._decide)
            if saw_keys or is_json:
                out, found = self._mask_text(out, prefix)
                return out, unique(masks + found)
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

        Names are checked during the walk; string values that may hold a credential or a
        ``name=value`` pair are collected and checked together afterwards
        (:meth:`_mask_strings`), with the masks they add put back in walk order.
        """
        later: list[_Later] = []
        self._walk_node(node, path, masks, keys, later)
        if later:
            self._mask_strings(later, masks)

    def _walk_node(
        self, node: object, path: str, masks: list[MaskedField], keys: list[int], later: list[_Later]
    ) -> None:
        """json.loads only makes plain dicts, lists and scalars, so exact ``type`` checks are
        safe; this runs for every key of every masked body, so it stays lean."""
        if type(node) is dict:
            self._walk_object(node, path, masks, keys, later)
        elif type(node) is list:
            for index, value in enumerate(node):
                kind = type(value)
                if kind is dict or kind is list:
                    self._walk_node(value, f"{path}[{index}]", masks, keys, later)
                elif kind is str and value:
                    self._walk_string(node, index, path, masks, keys, later)

    def _walk_object(
        self, node: dict[str, Any], path: str, masks: list[MaskedField], keys: list[int], later: list[_Later]
    ) -> None:
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
                self._walk_node(value, f"{path}.{key}", masks, keys, later)
            elif kind is str and value:
                self._walk_string(node, key, path, masks, keys, later)
        if "input" in node and type(node.get("loc")) is list:
            self._validation_input(node, path, masks)

    def _walk_string(
        self,
        node: Any,
        slot: str | int,
        parent: str,
        masks: list[MaskedField],
        keys: list[int],
        later: list[_Later],
    ) -> None:
        """A non-empty string value ``node[slot]``: JSON sent as a string is masked inside
        now; free text long enough to hold a credential is collected for :meth:`_mask_strings`."""
        value: str = node[slot]
        if value[0] in "{[" and self._json_string(node, slot, _child_path(parent, slot), masks, keys):
            return
        if len(value) >= _MIN_TEXT:
            later.append((node, slot, parent, len(masks)))

    def _json_string(
        self, node: Any, slot: str | int, path: str, masks: list[MaskedField], keys: list[int]
    ) -> bool:
        """JSON sent as a string (``node[slot]``): masked inside and written back. False when
        it does not parse, so that it is checked as free text instead."""
        value: str = node[slot]
        try:
            parsed = loads_text(value)
        except (ValueError, RecursionError):
            return False
        inner_masks: list[MaskedField] = []
        try:
            self._walk(parsed, path, inner_masks, keys)
        except RecursionError:  # too deep to walk: checked as free text instead
            return False
        if inner_masks:
            masks += inner_masks
            out = dumps_text(parsed)
            if may_have_rounded(out) or _SURROGATE.search(out):
                replaced = self._json_in_string_exact(value, path, masks)
                if replaced is None:
                    return True
                out = replaced
            node[slot] = out
        return True

    def _mask_strings(self, later: list[_Later], masks: list[MaskedField]) -> None:
        """Free-text masking of the string values the walk collected (each at least
        :data:`_MIN_TEXT` long): one scan of all of them picks those the per-value fast path
        could let through, and only those are checked one by one, exactly as alone."""
        values = [node[slot] for node, slot, _, _ in later]
        inserts: list[tuple[int, list[MaskedField]]] = []
        for i in self._may_match_some(values):
            value = values[i]
            if _VALUE_SHAPE.search(value) is None or not self._may_match(value, credentials=True):
                continue
            node, slot, parent, at = later[i]
            out, found = self._mask_text(value, _child_path(parent, slot))
            if found:
                node[slot] = out
                inserts.append((at, found))
        for at, found in reversed(inserts):  # where the walk met them
            masks[at:at] = found

    def _may_match_some(self, values: list[str]) -> Iterable[int]:
        """The indexes of ``values`` for which :meth:`_may_match` (with credentials) may be
        True: a superset, found with one scan of them all joined by newlines (no rule of the
        fast path spans a newline, and each is a plain search with no anchors)."""
        joined = "\n".join(values)
        custom = self._no_fast_path or self._field_custom is not None
        if custom or not joined.isascii() or self._escape in joined:
            return range(len(values))  # the rare cases: each value on its own, as before
        hits = _hits(NEEDLE_OR_CREDENTIAL_SCAN, joined.lower(), values)
        hits.update(_hits(CARD_HINT, joined, values))
        short = [i for i, value in enumerate(values) if len(value) <= SHORT_TEXT]  # IBANs: values only
        if short:
            picked = [values[i] for i in short]
            hits.update(short[i] for i in _hits(IBAN_HINT, "\n".join(picked), picked))
        return sorted(hits)

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


def _child_path(parent: str, slot: str | int) -> str:
    """The path of a JSON object's key (``a.b``) or a list's index (``a[0]``)."""
    return f"{parent}[{slot}]" if type(slot) is int else f"{parent}.{slot}"


def _hits(pattern: re.Pattern[str], joined: str, values: list[str]) -> set[int]:
    """The indexes of ``values`` (joined by newlines into ``joined``) where ``pattern`` matches."""
    found = [m.start() for m in pattern.finditer(joined)]
    if not found:
        return set()
    starts = list(accumulate((len(v) + 1 for v in values[:-1]), initial=0))
    return {bisect_right(starts, at) - 1 for at in found}
