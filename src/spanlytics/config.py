"""Settings: every one is a keyword argument, falling back to a ``SPANLYTICS_*`` env var,
then to a documented default. This is the only place that reads the environment.

>>> Settings.resolve(batch_size=64).batch_size
64

The core settings (capture, consumers, exclusions, sampling, masking, the worker, delivery,
the spool) are the fields of :class:`Settings`. Each destination owns its options
(``local_path``, ``readme_*``, ``apitally_*``, ``http_*``): a frozen class in its own folder,
built from the same :func:`~spanlytics._setting_fields.setting` fields, and registered in
:mod:`spanlytics.destinations.registry`. This module sits at the ground and imports no
destination: the registry hands itself over with :func:`use_destination_options` when it is
imported (``import spanlytics`` imports it), and :meth:`Settings.resolve` delegates to it the
keywords it does not own and the variables of every registered destination. The result is
:attr:`Settings.destination_options`, one typed options object per destination
(``ReadmeOptions.of(settings).api_key``). :class:`SettingsArgs` types every keyword.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from spanlytics._setting_fields import (
    bounds_problems,
    parse_bool,
    parse_csv,
    parse_optional_str,
    raise_problems,
    resolve_fields,
    setting,
)
from spanlytics._throttle import ThrottledLogger
from spanlytics.durations import check_window, parse_retention
from spanlytics.masking_options import EXCEPTION_MODES, MaskingRules

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's from Python 3.11


_log = ThrottledLogger(logging.getLogger("spanlytics.config"))

IdentifyConsumer = Callable[[Any], object]
"""A callback receiving a :class:`spanlytics.capture.RequestView` and returning a
``Consumer``, an identifier string, a mapping, or ``None``."""


def _exception_mode(raw: str) -> str:
    mode = raw.strip().lower()
    if mode not in EXCEPTION_MODES:
        raise ValueError(f"expected one of {', '.join(EXCEPTION_MODES)}")
    return mode


def _retention_problem(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            check_window(float(value), "")
        except ValueError:
            pass
        else:
            return None
    return "expected a number of seconds > 0, a duration such as 30d, or off"


class DestinationOptionsSource(Protocol):
    """What resolves the destinations' own settings: the registry of
    :mod:`spanlytics.destinations.registry`, handed over with :func:`use_destination_options`."""

    def names(self) -> tuple[str, ...]: ...

    def keywords(self) -> frozenset[str]: ...

    def resolve_options(self, environ: Mapping[str, str], given: Mapping[str, Any]) -> dict[str, object]: ...


_sources: list[DestinationOptionsSource] = []  # the registry, once it has been imported


def use_destination_options(source: DestinationOptionsSource) -> None:
    """Let :meth:`Settings.resolve` hand the destinations' keywords and variables to ``source``."""
    _sources[:] = [source]


def _default_destination_options() -> dict[str, object]:
    return _sources[0].resolve_options({}, {}) if _sources else {}


def _known_destinations(names: tuple[str, ...]) -> tuple[str, ...]:
    known_names = _sources[0].names() if _sources else ()
    known = tuple(dict.fromkeys(n.lower() for n in names if n.lower() in known_names))
    unknown = [n for n in names if n.lower() not in known_names]
    if unknown:
        _log.warning(
            "destinations.unknown",
            "ignoring unknown spanlytics destination(s) %s; known: %s",
            ", ".join(unknown),
            ", ".join(known_names),
        )
    return known


_DAY_S = 24 * 3600.0
_GIB = 1 << 30


class SettingsArgs(TypedDict, total=False):
    """Every keyword of :func:`spanlytics.configure` and :meth:`Settings.resolve`, typed::

    def configure(*, tracer_provider=None, **settings: Unpack[SettingsArgs]) -> ...

    A list of names may be one comma-separated string; ``None`` means "not given"."""

    enabled: bool | None
    destinations: str | Sequence[str] | None
    capture_bodies: bool | None
    capture_headers: bool | None
    max_body_bytes: int | None
    consumer_header: str | None
    consumer_from: str | Sequence[str] | None
    consumer_hash: bool | None
    consumer_hash_key: str | None
    exclude_paths: str | Sequence[str] | None
    exclude_user_agents: str | Sequence[str] | None
    exclude_defaults: bool | None
    sampling_fidelity: bool | None
    asgi_internal_spans: bool | None
    trust_forwarded_headers: bool | None
    readme_denylist: str | Sequence[str] | None
    readme_allowlist: str | Sequence[str] | None
    spool_dir: str | None
    spool_max_bytes: int | None
    spool_max_age_s: float | None
    delivery_timeout_s: float | None
    delivery_queue_batches: int | None
    delivery_batch_records: int | None
    delivery_batch_bytes: int | None
    delivery_backoff_max_s: float | None
    mask_headers: str | Sequence[str] | None
    mask_fields: str | Sequence[str] | None
    mask_allow: str | Sequence[str] | None
    mask_exceptions: str | None
    max_queue_size: int | None
    batch_size: int | None
    flush_interval_s: float | None
    max_response_wait_s: float | None
    retention_s: float | str | None
    rollup_retention_s: float | str | None
    masking: MaskingRules | None
    identify_consumer: IdentifyConsumer | None
    # the destinations' options (spanlytics.destinations.*): local, readme, apitally, http
    local_path: str | None
    readme_api_key: str | None
    readme_base_url: str | None
    readme_development: bool | None
    readme_allowed_hosts: str | Sequence[str] | None
    readme_log_anonymous: str | None
    apitally_client_id: str | None
    apitally_write_token: str | None
    apitally_otlp_endpoint: str | None
    apitally_sample_rate: float | None
    apitally_env: str | None
    apitally_base_url: str | None
    apitally_sync_interval_s: float | None
    apitally_request_logging: bool | None
    apitally_log_query_params: bool | None
    apitally_log_request_headers: bool | None
    apitally_log_request_body: bool | None
    apitally_log_response_headers: bool | None
    apitally_log_response_body: bool | None
    apitally_log_exception: bool | None
    http_url: str | None
    http_headers: str | Sequence[str] | None
    http_gzip: bool | None
    postgres_url: str | None
    local_max_mb: int | None
    otel_logs: bool | None
    otel_metrics: bool | None
    otel_max_consumers: int | None


@dataclass(frozen=True)
class Settings:
    """Resolved spanlytics settings. Build it with :meth:`resolve`.

    ``masking`` (a :class:`~spanlytics.masking.MaskingRules`) and ``identify_consumer`` are
    code-only; the ``mask_*`` settings add patterns to it from the environment.
    ``readme_denylist`` and ``readme_allowlist`` keep ReadMe's option names but are general
    masking settings: they mask what every destination receives (the local store too), so
    a name a user wanted hidden never reaches a destination unmasked.
    """

    enabled: bool = setting(True, parse_bool)
    destinations: tuple[str, ...] = setting(("local",), parse_csv, names=True)
    capture_bodies: bool = setting(True, parse_bool)
    capture_headers: bool = setting(True, parse_bool)
    # a cap on each captured body, held per request in flight: 0 turns bodies off
    max_body_bytes: int = setting(64 * 1024, bounds=(0, _GIB))
    consumer_header: str | None = setting(None, parse_optional_str)
    consumer_from: tuple[str, ...] = setting((), parse_csv, names=True)
    consumer_hash: bool = setting(False, parse_bool)
    consumer_hash_key: str | None = setting(None, parse_optional_str, secret=True)
    exclude_paths: tuple[str, ...] = setting((), parse_csv, regexes=True)
    exclude_user_agents: tuple[str, ...] = setting((), parse_csv, regexes=True)
    exclude_defaults: bool = setting(True, parse_bool)
    sampling_fidelity: bool = setting(True, parse_bool)
    # None: keep them unless spanlytics alone sees them
    asgi_internal_spans: bool | None = setting(None, parse_bool)
    trust_forwarded_headers: bool = setting(False, parse_bool)  # read by readme and apitally
    readme_denylist: tuple[str, ...] = setting((), parse_csv, names=True)
    readme_allowlist: tuple[str, ...] = setting((), parse_csv, names=True)
    spool_dir: str | None = setting(None, parse_optional_str)
    # one destination's spool (a PiB is no limit; it keeps the arithmetic finite)
    spool_max_bytes: int = setting(100 * 1024 * 1024, bounds=(1, 1 << 50))
    # older spooled batches are dropped: a year is as long as any receiver would take them
    spool_max_age_s: float = setting(_DAY_S, bounds=(0.0, 365 * _DAY_S))
    delivery_timeout_s: float = setting(10.0, bounds=(0.0, 3600.0))  # one request's read
    delivery_queue_batches: int = setting(64, bounds=(1, 1_000_000))  # in memory, then spooled
    delivery_batch_records: int = setting(500, bounds=(1, 1_000_000))
    delivery_batch_bytes: int = setting(1024 * 1024, bounds=(1, _GIB))  # before compression
    delivery_backoff_max_s: float = setting(30.0, bounds=(0.0, 3600.0))
    mask_headers: tuple[str, ...] = setting((), parse_csv, regexes=True)
    mask_fields: tuple[str, ...] = setting((), parse_csv, regexes=True)
    mask_allow: tuple[str, ...] = setting((), parse_csv, names=True)
    mask_exceptions: str | None = setting(None, _exception_mode)  # None: as ``masking`` says
    # spans waiting for the worker: each holds its captured bodies in memory
    max_queue_size: int = setting(20_000, bounds=(1, 10_000_000))
    batch_size: int = setting(512, bounds=(1, 1_000_000))  # spans built into one batch
    flush_interval_s: float = setting(1.0, bounds=(0.0, 3600.0))  # a record's longest wait
    max_response_wait_s: float = setting(30.0, bounds=(0.0, _DAY_S))  # for a streaming response
    # the stores delete request records older than this in the background (None: "off")
    retention_s: float | None = setting(30 * _DAY_S, parse_retention, text=True)
    # and their per-minute rollups older than this, which the report reads
    rollup_retention_s: float | None = setting(400 * _DAY_S, parse_retention, text=True)
    masking: MaskingRules | None = field(default=None, compare=False)
    identify_consumer: IdentifyConsumer | None = field(default=None, compare=False)
    # each registered destination's options by name, as the registry resolved them
    destination_options: Mapping[str, object] = field(
        default_factory=_default_destination_options, hash=False
    )

    def __getattr__(self, name: str) -> object:
        """A destination's option by its keyword, read-only (``settings.readme_api_key``), as
        before the options moved to their destinations; new code reads ``ReadmeOptions.of(settings)``."""
        for destination, options in self.__dict__.get("destination_options", {}).items():
            option = name.removeprefix(f"{destination}_")
            if option != name and option in getattr(options, "__dataclass_fields__", ()):
                return getattr(options, option)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def resolve(cls, env: Mapping[str, str] | None = None, **overrides: Unpack[SettingsArgs]) -> Settings:
        """Keyword arguments win; then ``SPANLYTICS_*`` variables; then the defaults.

        Unknown keyword arguments raise ``TypeError`` (a programming error at start-up).
        An invalid environment value logs a warning naming the variable and keeps the default.
        """
        environ = os.environ if env is None else env
        own = {f.name for f in fields(cls)} - {"destination_options"}
        theirs = {k: v for k, v in overrides.items() if k not in own}
        unknown = set(theirs) - (_sources[0].keywords() if _sources else frozenset())
        if unknown:
            raise TypeError(f"unknown spanlytics setting(s): {', '.join(sorted(unknown))}")
        values = resolve_fields(cls, environ, {k: v for k, v in overrides.items() if k in own})
        if "destinations" in values:
            values["destinations"] = _known_destinations(tuple(values["destinations"]))
        options = _sources[0].resolve_options(environ, theirs) if _sources else {}
        return cls(**values, destination_options=options)

    def __post_init__(self) -> None:
        """Values given in code are checked at start-up (environment values were already)."""
        problems = bounds_problems(self)
        # exactly one of the modes: the masker refuses any other spelling ("Omit"), and would
        # then disable spanlytics at its first record instead of failing here
        if self.mask_exceptions is not None and self.mask_exceptions not in EXCEPTION_MODES:
            problems["mask_exceptions"] = f"expected one of {', '.join(EXCEPTION_MODES)}"
        for name in ("retention_s", "rollup_retention_s"):
            problems[name] = _retention_problem(getattr(self, name))
        raise_problems(problems)
