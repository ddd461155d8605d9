"""Settings: every one is a keyword argument, falling back to a ``SPANLYTICS_*`` env var,
then to a documented default. This is the only place that reads the environment.

>>> Settings.resolve(local_path="/tmp/api.db").local_path
'/tmp/api.db'
"""

from __future__ import annotations

import logging
import math
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from spanlytics._throttle import ThrottledLogger
from spanlytics.delivery.settings import header_problem

if TYPE_CHECKING:
    from spanlytics.consumer import ConsumerSources
    from spanlytics.delivery.settings import SenderSettings
    from spanlytics.exclusions import Exclusions
    from spanlytics.masking import MaskingRules

_log = ThrottledLogger(logging.getLogger("spanlytics.config"))

IdentifyConsumer = Callable[[Any], object]
"""A callback receiving a :class:`spanlytics.capture.RequestView` and returning a
``Consumer``, an identifier string, a mapping, or ``None``."""

KNOWN_DESTINATIONS = ("local", "http", "readme", "apitally")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


_DAY_S = 24 * 3600.0
_GIB = 1 << 30

# The range of every numeric setting, as data: (minimum, maximum), inclusive. Seconds are
# floats and must also be > 0: an interval of 0 spins a thread, and NaN, inf or 1e300 seconds
# make every timed wait raise OverflowError in the thread that owns it. The maxima are far
# beyond any sensible value, so they only reject typos and absurd values.
NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    # a cap on each captured body, held per request in flight: 0 turns bodies off
    "max_body_bytes": (0, _GIB),
    # spans waiting for the worker: each holds its captured bodies in memory
    "max_queue_size": (1, 10_000_000),
    # spans the worker builds into one destination batch
    "batch_size": (1, 1_000_000),
    # how long a built record may wait for more before it is handed on
    "flush_interval_s": (0.0, 3600.0),
    # how long a span waits for its still-streaming response
    "max_response_wait_s": (0.0, _DAY_S),
    # one destination's on-disk spool (a PiB is no limit; it keeps the arithmetic finite)
    "spool_max_bytes": (1, 1 << 50),
    # older spooled batches are dropped: a year is as long as any receiver would take them
    "spool_max_age_s": (0.0, 365 * _DAY_S),
    # one delivery request's read timeout
    "delivery_timeout_s": (0.0, 3600.0),
    # batches a destination keeps in memory before it spools
    "delivery_queue_batches": (1, 1_000_000),
    # records in one delivered batch
    "delivery_batch_records": (1, 1_000_000),
    # bytes in one delivered batch (before compression)
    "delivery_batch_bytes": (1, _GIB),
    # the longest pause between two delivery attempts
    "delivery_backoff_max_s": (0.0, 3600.0),
    # Apitally's sync period (the client uses 10 s, then 60 s)
    "apitally_sync_interval_s": (0.0, 3600.0),
}


def _expectation(name: str) -> str:
    """What a valid value of ``name`` looks like (never the value that was given)."""
    low, high = NUMERIC_RANGES[name]
    if isinstance(low, float):
        return f"expected a number of seconds > 0 and <= {high:g}"
    return f"expected a whole number from {low} to {high}"


def numeric_problem(name: str, value: object) -> str | None:
    """Why ``value`` is not valid for the numeric setting ``name``, or None when it is."""
    low, high = NUMERIC_RANGES[name]
    seconds = isinstance(low, float)
    kinds = (int, float) if seconds else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        return _expectation(name)
    ok = (math.isfinite(value) and low < value <= high) if seconds else low <= value <= high
    return None if ok else _expectation(name)


def _number_parser(name: str) -> Callable[[str], float]:
    """An environment parser for the numeric setting ``name``."""
    seconds = isinstance(NUMERIC_RANGES[name][0], float)

    def parse(raw: str) -> float:
        try:
            value: float = float(raw.strip()) if seconds else int(raw.strip())
        except ValueError:
            raise ValueError(_expectation(name)) from None  # int()'s message quotes the value
        problem = numeric_problem(name, value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return parse


def _header_entries_problem(entries: tuple[str, ...]) -> str | None:
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            return "expected Name=Value entries separated by commas"
        problem = header_problem(name.strip(), value.strip())
        if problem is not None:
            return problem
    return None


def _http_headers(raw: str) -> tuple[str, ...]:
    entries = _csv(raw)
    problem = _header_entries_problem(entries)
    if problem is not None:
        raise ValueError(problem)
    return entries


def _exception_mode(raw: str) -> str:
    from spanlytics.masking import EXCEPTION_MODES

    mode = raw.strip().lower()
    if mode not in EXCEPTION_MODES:
        raise ValueError(f"expected one of {', '.join(EXCEPTION_MODES)}")
    return mode


def _optional_str(raw: str) -> str | None:
    return raw.strip() or None


APITALLY_ENV_PATTERN = re.compile(r"^[\w-]{1,32}$")


def _uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw.strip()))
    except ValueError:
        raise ValueError("expected a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6") from None


def _apitally_env(raw: str) -> str:
    if APITALLY_ENV_PATTERN.match(raw.strip()) is None:
        raise ValueError("expected 1-32 letters, digits, '_' or '-'")
    return raw.strip()


# Settings that hold several values. Given as one string in code, a list of names is parsed
# exactly as its environment variable (comma-separated); a list of regexes keeps the string
# as one pattern, since a regex may hold a comma (``a{1,3}``).
_NAME_LISTS = frozenset(
    {
        "destinations",
        "consumer_from",
        "mask_allow",
        "readme_allowed_hosts",
        "readme_denylist",
        "readme_allowlist",
        "http_headers",
    }
)
_REGEX_LISTS = frozenset({"exclude_paths", "exclude_user_agents", "mask_headers", "mask_fields"})

_ENV_PARSERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "enabled": ("SPANLYTICS_ENABLED", _bool),
    "destinations": ("SPANLYTICS_DESTINATIONS", _csv),
    "local_path": ("SPANLYTICS_LOCAL_PATH", str),
    "capture_bodies": ("SPANLYTICS_CAPTURE_BODIES", _bool),
    "capture_headers": ("SPANLYTICS_CAPTURE_HEADERS", _bool),
    "max_body_bytes": ("SPANLYTICS_MAX_BODY_BYTES", _number_parser("max_body_bytes")),
    "consumer_header": ("SPANLYTICS_CONSUMER_HEADER", _optional_str),
    "consumer_from": ("SPANLYTICS_CONSUMER_FROM", _csv),
    "consumer_hash": ("SPANLYTICS_CONSUMER_HASH", _bool),
    "consumer_hash_key": ("SPANLYTICS_CONSUMER_HASH_KEY", _optional_str),
    "exclude_paths": ("SPANLYTICS_EXCLUDE_PATHS", _csv),
    "exclude_user_agents": ("SPANLYTICS_EXCLUDE_USER_AGENTS", _csv),
    "exclude_defaults": ("SPANLYTICS_EXCLUDE_DEFAULTS", _bool),
    "sampling_fidelity": ("SPANLYTICS_SAMPLING_FIDELITY", _bool),
    "asgi_internal_spans": ("SPANLYTICS_ASGI_INTERNAL_SPANS", _bool),
    "readme_api_key": ("SPANLYTICS_README_API_KEY", _optional_str),
    "readme_base_url": ("SPANLYTICS_README_BASE_URL", str),
    "readme_development": ("SPANLYTICS_README_DEVELOPMENT", _bool),
    "readme_allowed_hosts": ("SPANLYTICS_README_ALLOWED_HOSTS", _csv),
    "readme_log_anonymous": ("SPANLYTICS_README_LOG_ANONYMOUS", _optional_str),
    "readme_denylist": ("SPANLYTICS_README_DENYLIST", _csv),
    "readme_allowlist": ("SPANLYTICS_README_ALLOWLIST", _csv),
    "trust_forwarded_headers": ("SPANLYTICS_TRUST_FORWARDED_HEADERS", _bool),
    "apitally_client_id": ("SPANLYTICS_APITALLY_CLIENT_ID", _uuid),
    "apitally_env": ("SPANLYTICS_APITALLY_ENV", _apitally_env),
    "apitally_base_url": ("SPANLYTICS_APITALLY_BASE_URL", str),
    "apitally_sync_interval_s": (
        "SPANLYTICS_APITALLY_SYNC_INTERVAL",
        _number_parser("apitally_sync_interval_s"),
    ),
    "apitally_request_logging": ("SPANLYTICS_APITALLY_REQUEST_LOGGING", _bool),
    "apitally_log_query_params": ("SPANLYTICS_APITALLY_LOG_QUERY_PARAMS", _bool),
    "apitally_log_request_headers": ("SPANLYTICS_APITALLY_LOG_REQUEST_HEADERS", _bool),
    "apitally_log_request_body": ("SPANLYTICS_APITALLY_LOG_REQUEST_BODY", _bool),
    "apitally_log_response_headers": ("SPANLYTICS_APITALLY_LOG_RESPONSE_HEADERS", _bool),
    "apitally_log_response_body": ("SPANLYTICS_APITALLY_LOG_RESPONSE_BODY", _bool),
    "apitally_log_exception": ("SPANLYTICS_APITALLY_LOG_EXCEPTION", _bool),
    "http_url": ("SPANLYTICS_HTTP_URL", _optional_str),
    "http_headers": ("SPANLYTICS_HTTP_HEADERS", _http_headers),
    "http_gzip": ("SPANLYTICS_HTTP_GZIP", _bool),
    "spool_dir": ("SPANLYTICS_SPOOL_DIR", _optional_str),
    "spool_max_bytes": ("SPANLYTICS_SPOOL_MAX_BYTES", _number_parser("spool_max_bytes")),
    "spool_max_age_s": ("SPANLYTICS_SPOOL_MAX_AGE", _number_parser("spool_max_age_s")),
    "delivery_timeout_s": ("SPANLYTICS_DELIVERY_TIMEOUT", _number_parser("delivery_timeout_s")),
    "delivery_queue_batches": ("SPANLYTICS_DELIVERY_QUEUE_BATCHES", _number_parser("delivery_queue_batches")),
    "delivery_batch_records": ("SPANLYTICS_DELIVERY_BATCH_RECORDS", _number_parser("delivery_batch_records")),
    "delivery_batch_bytes": ("SPANLYTICS_DELIVERY_BATCH_BYTES", _number_parser("delivery_batch_bytes")),
    "delivery_backoff_max_s": ("SPANLYTICS_DELIVERY_BACKOFF_MAX", _number_parser("delivery_backoff_max_s")),
    "mask_headers": ("SPANLYTICS_MASK_HEADERS", _csv),
    "mask_fields": ("SPANLYTICS_MASK_FIELDS", _csv),
    "mask_allow": ("SPANLYTICS_MASK_ALLOW", _csv),
    "mask_exceptions": ("SPANLYTICS_MASK_EXCEPTIONS", _exception_mode),
    "max_queue_size": ("SPANLYTICS_MAX_QUEUE_SIZE", _number_parser("max_queue_size")),
    "batch_size": ("SPANLYTICS_BATCH_SIZE", _number_parser("batch_size")),
    "flush_interval_s": ("SPANLYTICS_FLUSH_INTERVAL", _number_parser("flush_interval_s")),
    "max_response_wait_s": ("SPANLYTICS_MAX_RESPONSE_WAIT", _number_parser("max_response_wait_s")),
}


def _known_destinations(names: tuple[str, ...]) -> tuple[str, ...]:
    known = tuple(dict.fromkeys(n.lower() for n in names if n.lower() in KNOWN_DESTINATIONS))
    unknown = [n for n in names if n.lower() not in KNOWN_DESTINATIONS]
    if unknown:
        _log.warning(
            "destinations.unknown",
            "ignoring unknown spanlytics destination(s) %s; known: %s",
            ", ".join(unknown),
            ", ".join(KNOWN_DESTINATIONS),
        )
    return known


@dataclass(frozen=True)
class Settings:
    """Resolved spanlytics settings. Build it with :meth:`resolve`.

    ``masking`` (a :class:`~spanlytics.masking.MaskingRules`) and ``identify_consumer`` are
    code-only; the ``mask_*`` settings add patterns to it from the environment.
    """

    enabled: bool = True
    destinations: tuple[str, ...] = ("local",)
    local_path: str = "./spanlytics.db"
    capture_bodies: bool = True
    capture_headers: bool = True
    max_body_bytes: int = 64 * 1024
    consumer_header: str | None = None
    consumer_from: tuple[str, ...] = ()
    consumer_hash: bool = False
    consumer_hash_key: str | None = field(default=None, repr=False)
    exclude_paths: tuple[str, ...] = ()
    exclude_user_agents: tuple[str, ...] = ()
    exclude_defaults: bool = True
    sampling_fidelity: bool = True
    asgi_internal_spans: bool | None = None  # None: keep them unless spanlytics alone sees them
    readme_api_key: str | None = field(default=None, repr=False)
    readme_base_url: str = "https://metrics.readme.io"
    readme_development: bool = False
    readme_allowed_hosts: tuple[str, ...] = ()
    readme_log_anonymous: str | None = None
    readme_denylist: tuple[str, ...] = ()
    readme_allowlist: tuple[str, ...] = ()
    trust_forwarded_headers: bool = False
    apitally_client_id: str | None = None
    apitally_env: str = "prod"
    apitally_base_url: str = "https://hub.apitally.io"
    apitally_sync_interval_s: float | None = None  # None: 10 s in the first hour, then 60 s
    apitally_request_logging: bool = False
    apitally_log_query_params: bool = True
    apitally_log_request_headers: bool = False
    apitally_log_request_body: bool = False
    apitally_log_response_headers: bool = True
    apitally_log_response_body: bool = False
    apitally_log_exception: bool = True
    http_url: str | None = None
    http_headers: tuple[str, ...] = field(default=(), repr=False)
    http_gzip: bool = False
    spool_dir: str | None = None
    spool_max_bytes: int = 100 * 1024 * 1024
    spool_max_age_s: float = 24 * 3600.0
    delivery_timeout_s: float = 10.0
    delivery_queue_batches: int = 64
    delivery_batch_records: int = 500
    delivery_batch_bytes: int = 1024 * 1024
    delivery_backoff_max_s: float = 30.0
    mask_headers: tuple[str, ...] = ()
    mask_fields: tuple[str, ...] = ()
    mask_allow: tuple[str, ...] = ()
    mask_exceptions: str | None = None  # None: as ``masking`` says ("strict" by default)
    max_queue_size: int = 20_000
    batch_size: int = 512
    flush_interval_s: float = 1.0
    max_response_wait_s: float = 30.0
    masking: MaskingRules | None = field(default=None, compare=False)
    identify_consumer: IdentifyConsumer | None = field(default=None, compare=False)

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Keyword arguments win; then ``SPANLYTICS_*`` variables; then the defaults.

        Unknown keyword arguments raise ``TypeError`` (a programming error at start-up).
        An invalid environment value logs a warning naming the variable and keeps the default.
        """
        environ = os.environ if env is None else env
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown spanlytics setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, (var, parse) in _ENV_PARSERS.items():
            raw = environ.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:  # the message names the expectation, never the value
                _log.warning(f"env.{var}", "ignoring invalid %s (%s); using the default", var, exc)
        for name, given in overrides.items():
            if given is None:
                continue
            if isinstance(given, str) and name in _NAME_LISTS:
                try:
                    values[name] = _ENV_PARSERS[name][1](given)
                except ValueError as exc:  # the message names the expectation, never the value
                    raise ValueError(f"invalid spanlytics setting(s): {name} ({exc})") from None
            elif isinstance(given, str) and name in _REGEX_LISTS:
                values[name] = (given,)
            else:
                values[name] = given
        if "destinations" in values:
            values["destinations"] = _known_destinations(tuple(values["destinations"]))
        return cls(**values)

    def __post_init__(self) -> None:
        """Values given in code are checked at start-up (environment values were already)."""
        problems: dict[str, str | None] = {
            name: numeric_problem(name, getattr(self, name))
            for name in NUMERIC_RANGES
            if getattr(self, name) is not None  # apitally_sync_interval_s: None is the client's timing
        }
        if not isinstance(self.apitally_env, str) or APITALLY_ENV_PATTERN.match(self.apitally_env) is None:
            problems["apitally_env"] = "expected 1-32 letters, digits, '_' or '-'"
        if self.apitally_client_id is not None:
            try:
                uuid.UUID(self.apitally_client_id)
            except (TypeError, ValueError, AttributeError):
                problems["apitally_client_id"] = "expected a UUID"
        if isinstance(self.http_headers, str) or not all(isinstance(h, str) for h in self.http_headers):
            problems["http_headers"] = "expected Name=Value strings"
        else:
            problems["http_headers"] = _header_entries_problem(tuple(self.http_headers))
        if self.mask_exceptions is not None:
            from spanlytics.masking import EXCEPTION_MODES

            # exactly one of the modes: the masker refuses any other spelling ("Omit"), and
            # would then disable spanlytics at its first record instead of failing here
            if self.mask_exceptions not in EXCEPTION_MODES:
                problems["mask_exceptions"] = f"expected one of {', '.join(EXCEPTION_MODES)}"
        bad = [f"{name} ({problem})" for name, problem in problems.items() if problem is not None]
        if bad:
            raise ValueError(f"invalid spanlytics setting(s): {'; '.join(bad)}")

    def sender_settings(
        self, base_url: str, headers: tuple[tuple[str, str], ...] = (), gzip: bool = False
    ) -> SenderSettings:
        """Delivery settings for one remote destination."""
        from spanlytics.delivery.settings import SenderSettings

        return SenderSettings(
            base_url=base_url.rstrip("/"),
            headers=headers,
            gzip=gzip,
            read_timeout_s=self.delivery_timeout_s,
            max_queue_batches=self.delivery_queue_batches,
            spool_dir=self.spool_dir,
            spool_max_bytes=self.spool_max_bytes,
            spool_max_age_s=self.spool_max_age_s,
            backoff_max_s=self.delivery_backoff_max_s,
        )

    def http_header_pairs(self) -> tuple[tuple[str, str], ...]:
        """``SPANLYTICS_HTTP_HEADERS`` entries ``Name=Value`` as pairs (validated at start)."""
        pairs = (entry.partition("=") for entry in self.http_headers)
        return tuple((name.strip(), value.strip()) for name, _, value in pairs)

    def consumer_sources(self) -> ConsumerSources:
        """The no-code consumer sources; an identifier read from a header that masking hides
        (``X-Api-Key``) is hashed even without ``consumer_hash``."""
        from spanlytics.consumer import NO_SENSITIVE_HEADERS, ConsumerSources
        from spanlytics.masking import Masker

        sensitive = NO_SENSITIVE_HEADERS
        if not self.consumer_hash:  # (with it every identifier is hashed)
            try:
                sensitive = Masker(self.masking_rules()).is_sensitive_header
            except ValueError:  # invalid user patterns: the defaults still decide
                sensitive = Masker().is_sensitive_header
        return ConsumerSources.parse(
            self.consumer_from,
            self.consumer_header,
            self.consumer_hash,
            self.consumer_hash_key,
            sensitive_header=sensitive,
        )

    def identify_callback(self) -> IdentifyConsumer | None:
        """The code-given callback, else a ``module:function`` from ``SPANLYTICS_CONSUMER_FROM``."""
        if self.identify_consumer is not None:
            return self.identify_consumer
        from spanlytics.consumer import load_callback

        return load_callback(self.consumer_from)

    def exclusions(self) -> Exclusions:
        """Excluded paths/user agents; an invalid user pattern is ignored with a warning."""
        from spanlytics.exclusions import Exclusions

        try:
            return Exclusions.build(
                self.exclude_paths, self.exclude_user_agents, defaults=self.exclude_defaults
            )
        except ValueError as exc:
            _log.warning("exclusions.invalid", "%s; using the default exclusions only", exc)
            return Exclusions.build(defaults=self.exclude_defaults)

    def masking_rules(self) -> MaskingRules:
        """The code-given masking rules extended by the ``SPANLYTICS_MASK_*`` variables."""
        from dataclasses import replace

        from spanlytics.masking import MaskingRules

        def names(value: str | tuple[str, ...]) -> tuple[str, ...]:
            return (value,) if isinstance(value, str) else tuple(value)  # one string, one pattern

        rules = self.masking or MaskingRules()
        hidden: tuple[str, ...] = ()
        if self.consumer_hash:  # the raw identifier must not survive in the header it came from
            hidden = tuple(f"^{re.escape(h)}$" for h in self.consumer_sources().identifying_headers())
        # ReadMe's denylist/allowlist, as aliases: a denylisted name is masked (in any letter
        # case, at any depth); with an allowlist, every header and field not on it is masked.
        deny = tuple(f"^{re.escape(name)}$" for name in self.readme_denylist)
        everything = (".*",) if self.readme_allowlist else ()
        return replace(
            rules,
            header_patterns=(*names(rules.header_patterns), *self.mask_headers, *hidden, *deny, *everything),
            field_patterns=(*names(rules.field_patterns), *self.mask_fields, *deny, *everything),
            allow=(*names(rules.allow), *self.mask_allow, *self.readme_allowlist),
            exceptions=self.mask_exceptions or rules.exceptions,
        )
