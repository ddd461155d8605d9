"""Find the secrets of :mod:`tests.support.leak_cases` in every byte spanlytics kept or sent.

A :class:`Sink` is one place's bytes (an SQLite column, the raw database file and its WAL,
the bodies one stub received, a spool file, log text). :func:`views` derives decoded forms
of those bytes, recursively: gzip members found anywhere (Apitally's log files, spooled
gzip bodies), JSON string literals with escapes, base64/base64url runs (Apitally's bodies,
Basic credentials, JWT parts), percent-decoding, and the bytes with NULs removed (UTF-16 and
UTF-32 text). A secret is found by its marker and serial, so a secret cut short still counts.

Failure reports never carry a secret: each match is shown as a short window of the view it
was found in, with every secret in the window replaced by ``<SECRET>``.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import re
import sqlite3
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from tests.support.leak_cases import MARKER, LeakCase

_MAX_INFLATE = 64 * 1024 * 1024
_GZIP_MAGIC = re.compile(rb"\x1f\x8b\x08")
_JSON_STRING = re.compile(rb'"[^"\\\n]*(?:\\.[^"\\\n]*)*"')
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_\-]{12,}={0,2}")
# tokens (by marker and serial, so a cut secret still counts), card numbers, IBANs; each
# pattern starts with a literal, which the regex engine scans for quickly
_FOUND = (
    re.compile(MARKER.encode() + rb"(\d{5})"),
    re.compile(rb"4(?<!\d4)\d{15}(?!\d)"),
    re.compile(rb"DE89\d{18}"),
)
_REDACT = re.compile(MARKER.encode() + rb"\d{0,5}[0-9a-f]{0,12}(?:_sig)?|(?<!\d)4\d{15}(?!\d)|DE89\d{18}")
# the same secrets as UTF-16/UTF-32 text (NULs between the characters)
_REDACT_WIDE = re.compile(
    rb"\x00{0,3}".join(re.escape(bytes([c])) for c in MARKER.encode()) + rb"(?:\x00{0,3}[0-9a-f_sig])*"
)
_WINDOW = 40


@dataclass(frozen=True)
class Sink:
    destination: str  # sqlite-rows, sqlite-file, http, readme, apitally, spool, logs, server-output
    label: str
    data: bytes


@dataclass(frozen=True)
class Finding:
    case: LeakCase
    destination: str
    label: str
    view: str
    window: str


def _marker_in_base64() -> tuple[bytes, ...]:
    """What the marker looks like inside base64 text, at each of the three byte alignments."""
    needles = []
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + MARKER.encode())
        needles.append(encoded[-(-pad * 8 // 6) : (pad + len(MARKER)) * 8 // 6])
    return tuple(needles)


_MARKER_B64 = _marker_in_base64()


def _b64_variants(run: bytes, offsets: range = range(4)) -> Iterator[bytes]:
    run = run.rstrip(b"=")
    for offset in offsets:
        part = run[offset:]
        part = part[: len(part) - len(part) % 4] if len(part) % 4 == 1 else part
        padded = part + b"=" * (-len(part) % 4)
        for alt in (b"+/", b"-_"):
            try:
                yield base64.b64decode(padded, altchars=alt, validate=False)
            except ValueError:
                continue


def _base64_decoded(blob: bytes) -> Iterator[bytes]:
    """Decoded base64 runs that hold the marker's base64 form at any alignment (Basic
    credentials, JWT parts, bodies)."""
    for match in _BASE64_RUN.finditer(blob):
        run = match.group(0)
        if any(needle in run for needle in _MARKER_B64):
            yield from _b64_variants(run)


def _body_fields(blob: bytes) -> Iterator[bytes]:
    """The base64 ``body`` fields of JSON lines (Apitally's log items carry bodies so; a
    card number or IBAN there has no marker to spot in base64)."""
    if b'"body"' not in blob:
        return
    for line in blob.splitlines():
        if not line.startswith(b"{"):
            continue
        try:
            item = json.loads(line)
        except ValueError:
            continue
        stack = [item]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "body" and isinstance(value, str):
                        with contextlib.suppress(ValueError):
                            yield base64.b64decode(value, validate=True)
                    stack.append(value)
            elif isinstance(node, list):
                stack.extend(node)


_TEXTISH = b"\t\n\r\x00" + bytes(range(32, 127))


def _matches(data: bytes) -> Iterator[tuple[str, re.Match[bytes]]]:
    """``(key, match)`` for every secret-shaped string: the key is a token's serial, or the
    whole card number or IBAN."""
    for pattern in _FOUND:
        for match in pattern.finditer(data):
            yield (match.group(1) if pattern.groups else match.group(0)).decode(), match


def _looks_decoded(data: bytes) -> bool:
    """Base64 decoding of text that was not base64 gives noise: keep only text, gzip, or
    bytes that already hold a secret."""
    if data[:2] == b"\x1f\x8b" or any(p.search(data) for p in _FOUND):
        return True
    sample = data[:4096]
    return len(sample.translate(None, _TEXTISH)) <= 0.1 * len(sample)


def _derived(blob: bytes, done: set[str]) -> Iterator[tuple[str, bytes]]:
    """One decoding step of each kind not ``done`` yet along this chain."""
    if "nul-stripped" not in done and (b"\x00" in blob or b"\\u0000" in blob):
        yield "nul-stripped", blob.replace(b"\\u0000", b"").replace(b"\x00", b"")
    for match in _GZIP_MAGIC.finditer(blob) if "gunzip" not in done else ():
        try:
            inflated = zlib.decompressobj(31).decompress(blob[match.start() :], _MAX_INFLATE)
        except zlib.error:
            continue
        if inflated:
            yield "gunzip", inflated
    if "percent-decoded" not in done and b"%" in blob:
        decoded = unquote_to_bytes(blob)
        if decoded != blob:
            yield "percent-decoded", decoded
    if "json-unescaped" not in done and b"\\" in blob:
        strings = []
        for match in _JSON_STRING.finditer(blob):
            literal = match.group(0)
            if b"\\" in literal:
                with contextlib.suppress(ValueError):
                    strings.append(json.loads(literal).encode("utf-8", "surrogatepass"))
        if strings:
            yield "json-unescaped", b"\n".join(strings)
    if "base64-decoded" not in done:
        found = b"\n".join(
            d for d in (*_base64_decoded(blob), *_body_fields(blob)) if d and _looks_decoded(d)
        )
        if found:
            yield "base64-decoded", found


def views(data: bytes) -> Iterator[tuple[str, bytes]]:
    """``data`` and its decoded forms, each once, as ``(how, bytes)``: each decoding step at
    most once along a chain (``raw>gunzip>base64-decoded>nul-stripped``)."""
    seen: set[int] = set()
    work = [("raw", data)]
    while work:
        how, blob = work.pop()
        key = hash(blob)
        if key in seen:
            continue
        seen.add(key)
        yield how, blob
        work.extend((f"{how}>{step}", derived) for step, derived in _derived(blob, set(how.split(">"))))


def _redact_bytes(data: bytes) -> bytes:
    data = _REDACT_WIDE.sub(b"<SECRET>", _REDACT.sub(b"<SECRET>", data))

    def encoded(match: re.Match[bytes]) -> bytes:
        hidden = any(p.search(d) for d in _b64_variants(match.group(0)) for p in _FOUND)
        return b"<SECRET:base64>" if hidden else match.group(0)

    return _BASE64_RUN.sub(encoded, data)


def redact(text: str | bytes) -> str:
    """``text`` with every secret (plain, UTF-16/32, inside base64) replaced by ``<SECRET>``."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return _redact_bytes(data).decode("utf-8", "replace")


def redacted_window(blob: bytes, start: int, end: int) -> str:
    """A short window around a match, redacted (its edges may cut a secret: widen to whole ones)."""
    lo, hi = max(0, start - _WINDOW), end + _WINDOW
    for match in _REDACT.finditer(blob, max(0, lo - 40), hi + 40):
        if match.start() < lo < match.end():
            lo = match.start()
        if match.start() < hi < match.end():
            hi = match.end()
    return repr(redact(blob[lo:hi]))


class SecretIndex:
    def __init__(self, cases: Iterable[LeakCase]) -> None:
        self.by_key: dict[str, LeakCase] = {}
        for case in cases:
            key = (
                case.secret[len(MARKER) : len(MARKER) + 5] if case.secret.startswith(MARKER) else case.secret
            )
            self.by_key[key] = case

    def find(self, sink: Sink, only: set[LeakCase] | None = None) -> Iterator[Finding]:
        reported: set[LeakCase] = set()
        for how, blob in views(sink.data):
            for key, match in _matches(blob):
                case = self.by_key.get(key)
                if case is None or case in reported or (only is not None and case not in only):
                    continue
                reported.add(case)
                window = redacted_window(blob, match.start(), match.end())
                yield Finding(case, sink.destination, sink.label, how, window)


# --- collecting sinks ------------------------------------------------------------------------


def sqlite_sinks(db: Path) -> list[Sink]:
    """Every table's every column (all rows), and the raw bytes of the file, WAL and SHM."""
    sinks = []
    if db.exists():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                cursor = conn.execute(f'SELECT * FROM "{table}"')
                names = [d[0] for d in cursor.description]
                columns: dict[str, list[bytes]] = defaultdict(list)
                for row in cursor:
                    for name, value in zip(names, row, strict=True):
                        if value is not None:
                            columns[name].append(value if isinstance(value, bytes) else str(value).encode())
                for name, values in columns.items():
                    sinks.append(Sink("sqlite-rows", f"{table}.{name}", b"\n\x1e".join(values)))
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = Path(f"{db}{suffix}")
        if part.exists():
            sinks.append(Sink("sqlite-file", part.name, part.read_bytes()))
    return sinks


def directory_sinks(destination: str, root: Path) -> list[Sink]:
    return [
        Sink(destination, str(path.relative_to(root)), path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    ]


def text_sink(destination: str, label: str, text: str) -> Sink:
    return Sink(destination, label, text.encode("utf-8", "surrogatepass"))


def scan(
    cases: Sequence[LeakCase],
    sinks: Iterable[Sink],
    *,
    expected: Mapping[str, Callable[[LeakCase], bool]] = {},
) -> list[Finding]:
    """Every (case, sink) where the case's secret shows. ``expected`` names destinations that
    are not spanlytics' own output (a server's log, the user's other exporter) with the cases
    whose secret legitimately shows there (the app raised it, the instrumentor records it)."""
    index = SecretIndex(cases)
    findings = []
    for sink in sinks:
        shows = expected.get(sink.destination)
        only = {c for c in cases if not shows(c)} if shows is not None else None
        findings.extend(index.find(sink, only))
    return findings


def describe(case: LeakCase) -> str:
    """The request, secret redacted, to reproduce a case by hand."""
    body = redact(case.body or b"")[:200]
    headers = [(n, redact(v)) for n, v in case.headers]
    note = f" [{case.note}]" if case.note else ""
    target = f"{case.method} {case.path}?{redact(case.query)}"
    return f"{target} headers={headers} type={case.content_type} body={body!r}{note}"


def report(findings: Sequence[Finding], cases: Sequence[LeakCase]) -> str:
    """Findings grouped by position: the (framework -> destination) pairs it reached, one
    redacted window per pair, and the request (redacted) once per framework."""
    by_position: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        by_position[finding.case.position].append(finding)
    lines = [
        f"{len({f.case for f in findings})} of {len(cases)} requests leaked their secret, "
        f"in {len(by_position)} of {len({c.position for c in cases})} positions:"
    ]
    for position in sorted(by_position):
        group = by_position[position]
        pairs = sorted({(f.case.framework, f.destination) for f in group})
        lines.append(f"\n== {position}: " + ", ".join(f"{fw}->{dest}" for fw, dest in pairs))
        shown: set[tuple[str, str]] = set()
        described: set[LeakCase] = set()
        for finding in sorted(group, key=lambda f: (f.case.framework, f.destination)):
            key = (finding.case.framework, finding.destination)
            if key in shown:
                continue
            shown.add(key)
            if finding.case not in described and not any(
                c.framework == finding.case.framework for c in described
            ):
                described.add(finding.case)
                lines.append(f"  {finding.case.framework} request: {describe(finding.case)}")
            lines.append(
                f"    -> {finding.destination} [{finding.label} via {finding.view}] {finding.window}"
            )
    return "\n".join(lines)


def gunzip_if(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
