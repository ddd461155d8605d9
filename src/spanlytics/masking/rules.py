"""What is sensitive by default, as data: each entry says why it is there.

Compared with Sentry's default denylist, Logfire's default scrubbing patterns and OWASP's
Logging Cheat Sheet ("data to exclude"): everything they treat as a secret is here, plus
payment-card and bank-account names (PCI DSS), one-time codes and PINs, signatures of
pre-signed URLs and headers that carry JWTs.

Two kinds of name rules:

* *substrings* (``FIELD_SUBSTRINGS``): regexes searched case-insensitively anywhere in a
  name, so ``userPassword``, ``X-Api-Key`` and ``db.password`` all match. Each starts with a
  literal lower-case letter (the fast path factors them by first letter).
* *words* (``FIELD_WORDS``): short names that are also parts of common words (``pin`` in
  ``shipping``, ``otp`` in ``footprint``); they match only as a whole word of a name, where
  camelCase, ``_``, ``-``, ``.`` and digits separate words (``pin``, ``userPin``,
  ``PIN_CODE``, ``connect.sid``; not ``shipping``, ``pinned``, ``opinion``).

This module imports nothing of spanlytics but the user's side of masking
(:mod:`spanlytics.masking_options`, which the settings carry): it is the data the other
masking modules share.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from spanlytics.masking_options import EXCEPTION_MODES, KEEP, MaskingCallback, MaskingRules

__all__ = [
    "DEFAULT_FIELD_PATTERN",
    "DEFAULT_HEADER_NAMES",
    "DEFAULT_HEADER_PATTERN",
    "EXCEPTION_MODES",
    "FAILED",
    "KEEP",
    "MaskingCallback",
    "MaskingRules",
]


FAILED: Final = "[masked: could not be parsed]"


# --- names ---------------------------------------------------------------------------------

SEP: Final = r"[\W_]?"  # "any separator": api_key, api-key, api.key, "api key", apiKey

FIELD_SUBSTRINGS: Final[tuple[tuple[str, str], ...]] = (
    ("password", "passwords (Sentry, Logfire, OWASP: authentication passwords)"),
    ("passwd", "the Unix spelling of password (Sentry, Logfire)"),
    ("pwd", "password abbreviation: mysql_pwd, pwd (Sentry, Logfire)"),
    (r"pass(?:phrase|code)", "passphrases and passcodes are passwords"),
    ("secret", "client_secret, secret_key ... (Sentry, Logfire)"),
    ("token", "access, refresh, id and CSRF tokens (Sentry, Logfire, OWASP: access tokens)"),
    ("auth", "authorization, auth_code, oauth ... (Sentry, Logfire)"),
    (f"api{SEP}key", "API keys with any separator, as the README promises (Sentry, Logfire)"),
    ("credential", "credentials, X-Amz-Credential (Sentry, Logfire)"),
    (f"private{SEP}key", "private keys (Sentry, Logfire, OWASP: encryption keys)"),
    (f"encryption{SEP}key", "key material (OWASP: encryption keys)"),
    (f"signing{SEP}key", "key material (OWASP: encryption keys)"),
    (f"master{SEP}key", "key material (OWASP: encryption keys)"),
    (f"access{SEP}key", "cloud access keys (AWS access key pairs)"),
    (f"card{SEP}(?:number|num(?![a-z])|no(?![a-z]))", "payment card numbers (PCI DSS)"),
    (f"credit{SEP}card", "payment card data (Logfire, PCI DSS)"),
    (f"primary{SEP}account{SEP}number", "the card's PAN (PCI DSS)"),
    ("cvv", "card verification value (PCI DSS: never stored)"),
    ("cvc", "card verification code (PCI DSS: never stored)"),
    ("ccv", "card verification code, other spelling (PCI DSS)"),
    (f"security{SEP}code", "card security code (PCI DSS)"),
    ("iban", "international bank account numbers (OWASP: bank account data)"),
    (f"bank{SEP}account", "bank account numbers (OWASP: bank account data)"),
    (f"account{SEP}(?:number|num(?![a-z])|no(?![a-z]))", "bank account numbers (OWASP: bank account data)"),
    (f"routing{SEP}(?:number|num(?![a-z])|no(?![a-z]))", "ABA routing numbers, with the account number"),
    (f"sort{SEP}code", "UK bank sort codes, with the account number"),
    ("ssn", "social security numbers (Logfire)"),
    (f"social{SEP}security", "social security numbers (Logfire)"),
    ("session", "session ids (Sentry, Logfire, OWASP: session identification values)"),
    (f"sess{SEP}id", "PHPSESSID and other session ids (Sentry)"),
    ("cookie", "cookies carry sessions (Sentry, Logfire)"),
    ("csrf", "anti-forgery tokens (Sentry, Logfire)"),
    ("xsrf", "anti-forgery tokens (Sentry, Logfire)"),
    ("jwt", "JSON Web Tokens (Logfire)"),
    ("assertion", "SAML and JWT client assertions (client_assertion, cf-access-jwt-assertion)"),
    ("signature", "signatures of pre-signed URLs (X-Amz-Signature, X-Goog-Signature) and webhooks"),
    (f"one{SEP}time", "one-time codes, PINs and passwords"),
    (f"verification{SEP}code", "one-time codes sent by mail or SMS"),
    (f"recovery{SEP}code", "account recovery codes are passwords"),
    (f"backup{SEP}code", "MFA backup codes are passwords"),
    (f"mfa{SEP}code", "one-time codes"),
    (f"connection{SEP}string", "database connection strings (OWASP)"),
)

FIELD_WORDS: Final[tuple[tuple[str, str], ...]] = (
    ("pin", "PINs (PCI DSS); a word, so that shipping and pinned stay"),
    ("card", "payment card fields (PCI DSS); a word, so that cardinal and discard stay"),
    ("cc", "card number abbreviations (cc, cc_number); a word, so that access stays"),
    ("ccnum", "card number abbreviation"),
    ("pan", "the card's primary account number (PCI DSS); a word, so that company stays"),
    ("otp", "one-time passwords; a word, so that footprint stays"),
    ("totp", "time-based one-time passwords"),
    ("hotp", "counter-based one-time passwords"),
    ("pass", '"pass" next to "user" is a password; a word, so that compass and passport stay'),
    ("sig", "signatures of pre-signed URLs (Azure SAS sig=); a word, so that design stays"),
    ("sid", "session ids (connect.sid); a word, so that inside stays"),
    ("dsn", "data source names embed credentials (Sentry DSN, database DSN)"),
)

HEADER_SUBSTRINGS: Final[tuple[tuple[str, str], ...]] = (
    ("auth", "Authorization, X-Auth-Token, WWW-Authenticate ..."),
    (f"api{SEP}key", "API keys with any separator"),
    ("secret", "X-Client-Secret ..."),
    ("token", "X-Amz-Security-Token, X-Forwarded-Access-Token ..."),
    ("session", "X-Session-Id ..."),
    ("csrf", "X-CSRF-Token"),
    ("xsrf", "X-XSRF-Token"),
    ("jwt", "headers carrying JWTs (X-JWT-Assertion, Cf-Access-Jwt-Assertion)"),
    ("oidc", "AWS ALB's X-Amzn-Oidc-Data and -Accesstoken carry signed JWTs"),
    ("dpop", "DPoP proofs (RFC 9449) are JWTs"),
    ("assertion", "X-Goog-Iap-Jwt-Assertion and other identity assertions"),
    (f"client{SEP}principal", "Azure App Service's X-MS-Client-Principal (identity claims)"),
)

DEFAULT_HEADER_NAMES: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
"""Headers masked by exact name (besides the patterns)."""

URL_HEADERS: Final = frozenset({"location", "content-location", "refresh", "referer"})
"""Headers holding a URL whose OAuth parameters (:data:`URL_PARAMS`) are masked."""

URL_PARAMS: Final[tuple[tuple[str, str], ...]] = (
    ("code", "OAuth 2.0 authorization codes in redirects (RFC 6749 section 4.1.2)"),
)


def _word(word: str) -> str:
    """``word`` as a whole word of an identifier: camelCase, snake_case, kebab-case, dots.

    Case-sensitive on purpose (``(?-i:...)``): ``userPin`` has the word ``Pin``, ``spinner``
    and ``SHIPPING`` have none.
    """
    low, cap, up = word, word.capitalize(), word.upper()
    return f"(?-i:(?<![A-Za-z])(?:{low}|{cap})(?![a-z])|(?<=[a-z0-9]){cap}(?![a-z])|(?<![A-Z]){up}(?![A-Z]))"


def _factored(patterns: list[str]) -> str:
    """One alternation factored by first letter (each pattern starts with one): the regex
    engine then tests one branch per position instead of every pattern."""
    groups: dict[str, list[str]] = {}
    for pattern in patterns:
        groups.setdefault(pattern[0], []).append(pattern[1:])
    return "|".join(f"{first}(?:{'|'.join(rests)})" for first, rests in groups.items())


DEFAULT_FIELD_PATTERN: Final = "|".join([p for p, _ in FIELD_SUBSTRINGS] + [_word(w) for w, _ in FIELD_WORDS])
"""Query, form and JSON field names (and, through free text, ``name=value`` pairs); searched
with ``re.IGNORECASE`` (the word rules switch it off for themselves)."""

DEFAULT_HEADER_PATTERN: Final = "|".join(p for p, _ in HEADER_SUBSTRINGS)
"""Header names, besides :data:`DEFAULT_FIELD_PATTERN` and :data:`DEFAULT_HEADER_NAMES`."""

FIELD_SCAN: Final = re.compile(_factored([p for p, _ in FIELD_SUBSTRINGS]))
"""The substring rules for *lower-cased* text: ~20x faster than the same with re.I."""

_STARTS = {re.match(r"[a-z0-9]+", p).group() for p, _ in FIELD_SUBSTRINGS + FIELD_WORDS}  # type: ignore[union-attr]
NEEDLES: Final = tuple(sorted(n for n in _STARTS if not any(m != n and m in n for m in _STARTS)))
"""The literal start of every name rule: a text that holds none of them (lower-cased) matches
no rule."""
_ENGLISH = "etaoinshrdlcumwfgypbvkjxqz"  # letters from the most to the least frequent


def _anchored(needles: tuple[str, ...]) -> str:
    """An alternation of ``needles`` in which each starts at its rarest letter, the letters
    before it checked by a lookbehind: the regex engine tries only positions holding one of
    those rarer letters (about twice as fast as starting at the first letters)."""
    groups: dict[str, list[str]] = {}
    for needle in needles:
        i = max(range(len(needle)), key=lambda k: _ENGLISH.find(needle[k]) % 99)
        before, letter, after = needle[:i], needle[i], needle[i + 1 :]
        groups.setdefault(letter, []).append((f"(?<={before}{letter})" if before else "") + after)
    return "|".join(f"{letter}(?:{'|'.join(rests)})" for letter, rests in groups.items())


NEEDLE_SCAN: Final = re.compile(_anchored(NEEDLES))
"""The fast path: finds any of :data:`NEEDLES` in lower-cased text."""

_WORDS_AT: Final = tuple((w, re.compile(_word(w))) for w, _ in FIELD_WORDS)


def word_hits(text: str, low: str) -> Iterator[tuple[int, int]]:
    """Spans of the word rules in ``text`` (``low`` is ``text.lower()``): each word is found
    with ``str.find`` and checked where it is (a regex of lookbehinds would try every
    position of the text)."""
    for word, at in _WORDS_AT:
        start = low.find(word)
        while start >= 0:
            m = at.match(text, start)
            if m is not None:
                yield m.span()
            start = low.find(word, start + 1)


URL_PARAM_SCAN: Final = re.compile(
    r"(?<=[?&#;])(?:" + "|".join(p for p, _ in URL_PARAMS) + r")=([^&#\s]+)", re.I
)


# --- values --------------------------------------------------------------------------------

AUTH_SCHEMES: Final[tuple[tuple[str, str], ...]] = (
    ("bearer", "RFC 6750"),
    ("basic", "RFC 7617"),
    ("token", "Django REST framework, GitHub"),
    ("digest", "RFC 7616; its parameters run to the end of the line"),
    ("negotiate", "Kerberos/SPNEGO (RFC 4559)"),
    ("ntlm", "NTLM"),
    ("dpop", "DPoP-bound access tokens (RFC 9449)"),
    ("gnap", "GNAP (RFC 9635)"),
    ("hoba", "RFC 7486"),
    ("mutual", "RFC 8120"),
    ("apikey", "API gateways"),
    ("api-key", "API gateways"),
    ("key", "Shopify, Azure and others"),
    ("sso-key", "GoDaddy"),
    ("ssws", "Okta API tokens"),
    ("otp", "one-time passwords"),
    ("jwt", "JWT-only schemes"),
    ("hmac", "HMAC signature schemes"),
    ("signature", "HTTP Signatures"),
    ("oauth", "OAuth 1.0a parameters"),
    ("mac", "OAuth MAC tokens"),
    ("aws4-hmac-sha256", "AWS Signature Version 4"),
    ("splunk", "Splunk HEC tokens"),
    ("genie-key", "Opsgenie"),
    ("klaviyo-api-key", "Klaviyo"),
    ("zoho-oauthtoken", "Zoho"),
)
"""Authorization schemes: after a sensitive name the credentials that follow are masked."""

ANYWHERE_SCHEMES: Final = ("bearer", "basic", "digest", "negotiate", "ntlm", "dpop")
"""Schemes unambiguous enough to mask what follows them anywhere in free text."""

CREDENTIAL_NEEDLES: Final = (*ANYWHERE_SCHEMES, "eyj", "://")
"""What starts a credential anywhere in a value: a scheme, a JWT's ``eyJ``, a URL (which may
carry ``user:password@``)."""
NEEDLE_OR_CREDENTIAL_SCAN: Final = re.compile(_anchored(tuple(sorted({*NEEDLES, *CREDENTIAL_NEEDLES}))))
""":data:`NEEDLE_SCAN` and :data:`CREDENTIAL_NEEDLES` in one pass (lower-cased text)."""

_IBAN_TABLE = """
AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 DO28 EE20
EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30
KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 MT31 MU30 NL18 NO15 PK24 PL28
PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20
"""
IBAN_LENGTHS: Final = {entry[:2]: int(entry[2:]) for entry in _IBAN_TABLE.split()}
"""IBAN length per country (ISO 13616): a value of that shape is a bank account number
wherever it appears, whatever its name (``account=DE89...``); a wrong check digit does not
make it less one (masking fails closed)."""

_COMMON_WORDS = """
    a an the is are was were be been being am it its this that these those there here for of to
    in on at by with from as into onto via per and or nor not no but if then so than too very
    must should shall can cannot could will would may might has have had does do did done any
    all none null nil empty missing required invalid incorrect wrong bad expired revoked
    unknown unset given provided supplied needed needs mismatch mismatched changed reset length
    format type field value values header parameter param error errors failed failure denied
    rejected accepted ok valid verified check checks match matches matched policy rules rule
    hash hashed masked redacted too_short too_long short long weak strong new old current
    confirm confirmation again please
"""
COMMON_WORDS: Final = frozenset(_COMMON_WORDS.split())
"""Words kept after a sensitive name by the strict exception heuristic
(``token expired``, ``password must be ...``, ``password for user``)."""
