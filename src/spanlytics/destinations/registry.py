"""Which destinations a process writes to: one registry, one line per destination.

Each destination registers its options class (:class:`~spanlytics.destinations.options.DestinationOptions`:
fields, defaults, ``SPANLYTICS_<NAME>_*`` parsing) and a factory building it from the core
settings and those options::

    register(HttpOptions, build_http)

Importing this module hands the registry to :mod:`spanlytics.config`
(:func:`~spanlytics.config.use_destination_options`), which sits below the destinations and
may not import them: :meth:`Settings.resolve <spanlytics.config.Settings.resolve>` then
accepts every registered destination's keywords and reads its variables, and
:func:`build_destinations` builds the destinations that ``settings.destinations`` names.
A destination registered later (a plug-in, a test) works the same way, through the same call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from spanlytics._setting_fields import variable_of
from spanlytics.config import Settings, use_destination_options
from spanlytics.destinations import Destination
from spanlytics.destinations.apitally import ApitallyOptions, build_apitally
from spanlytics.destinations.http import HttpOptions, build_http
from spanlytics.destinations.local import LocalOptions, build_local_store
from spanlytics.destinations.options import DestinationOptions
from spanlytics.destinations.otel_signals import OtelOptions, build_otel
from spanlytics.destinations.postgres import PostgresOptions, build_postgres
from spanlytics.destinations.readme import ReadmeOptions, build_readme

__all__ = [
    "KNOWN_DESTINATIONS",
    "REGISTRY",
    "DestinationRegistry",
    "build_destinations",
    "register",
    "unregister",
]

_logger = logging.getLogger("spanlytics.exporter")

OptionsT = TypeVar("OptionsT", bound=DestinationOptions)


@dataclass(frozen=True)
class DestinationEntry(Generic[OptionsT]):
    options: type[OptionsT]
    build: Callable[[Settings, OptionsT], Destination]


class DestinationRegistry:
    """Destination name -> its options class and factory, in registration order."""

    def __init__(self) -> None:
        self.entries: dict[str, DestinationEntry[Any]] = {}

    def register(self, options: type[OptionsT], build: Callable[[Settings, OptionsT], Destination]) -> None:
        """Add (or replace) the destination ``options.name``; settings resolved from now on
        accept its keywords and read its variables."""
        self.entries[options.name] = DestinationEntry(options, build)

    def unregister(self, name: str) -> None:
        self.entries.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def keywords(self) -> frozenset[str]:
        return frozenset().union(*(entry.options.keywords() for entry in self.entries.values()))

    def resolve_options(self, environ: Mapping[str, str], given: Mapping[str, Any]) -> dict[str, object]:
        """Every destination's options from its keywords in ``given`` and its variables."""
        resolved: dict[str, object] = {}
        for name, entry in self.entries.items():
            keywords = entry.options.keywords()
            resolved[name] = entry.options.resolve(environ, {k: v for k, v in given.items() if k in keywords})
        return resolved

    def build(self, settings: Settings) -> list[Destination]:
        destinations: list[Destination] = []
        for name in settings.destinations:
            entry = self.entries.get(name)
            if entry is None:  # unregistered since the settings were resolved
                continue
            options = entry.options.of(settings)
            required = entry.options.required
            needed = (required,) if isinstance(required, str) else required or ()
            if needed and not any(getattr(options, field) for field in needed):
                variables = [variable_of(f"{name}_{field}") for field in needed]
                # A variable that is set but was invalid has had its warning, which says why
                # (and this one would only repeat it): one line per mistake.
                if not any(os.environ.get(variable, "").strip() for variable in variables):
                    needs = " or ".join(variables)
                    _logger.warning("the %s destination needs %s; it is not used", name, needs)
                continue
            destinations.append(entry.build(settings, options))
        return destinations


REGISTRY = DestinationRegistry()
register = REGISTRY.register
unregister = REGISTRY.unregister

register(LocalOptions, build_local_store)
register(HttpOptions, build_http)
register(ReadmeOptions, build_readme)
register(ApitallyOptions, build_apitally)
register(PostgresOptions, build_postgres)
register(OtelOptions, build_otel)

KNOWN_DESTINATIONS = REGISTRY.names()
"""The destinations that come with spanlytics."""

use_destination_options(REGISTRY)


def build_destinations(settings: Settings) -> list[Destination]:
    """The destinations ``settings.destinations`` names, built from their options."""
    return REGISTRY.build(settings)
