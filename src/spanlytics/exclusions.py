"""Requests that are neither counted nor logged: health checks, probes, favicon, robots.txt.

>>> Exclusions.default().excludes("/healthz", "Mozilla/5.0")
True
>>> Exclusions.default().excludes("/orders", "kube-probe/1.29")
True
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spanlytics._throttle import ThrottledLogger

if TYPE_CHECKING:
    from spanlytics.config import Settings

_log = ThrottledLogger(logging.getLogger("spanlytics.config"))

DEFAULT_PATHS = (
    # health endpoints at any depth (/api/v1/health), and their probe sub-paths
    r"/(?:_?health|healthz|healthcheck|health-check|readyz|livez)(?:/(?:live|liveness|ready|readiness))?/?$",
    # the short probe names only at the root: /users/ping or /games/live are real API routes
    r"^/(?:ping|ready|readiness|live|liveness|alive)/?$",
    r"/favicon\.ico$",
    r"^/robots\.txt$",
    r"^/\.well-known/",
)
DEFAULT_USER_AGENTS = (
    r"^kube-probe/",
    r"ELB-HealthChecker",
    r"^GoogleHC/",
    r"Amazon-Route53-Health-Check-Service",
    r"^Consul Health Check",
    r"Azure Traffic Manager Endpoint Monitor",
    r"^Envoy/HC",
    r"^Prometheus/",
    r"^Blackbox Exporter/",
    r"^UptimeRobot/",
)


_AGENTS_KEPT = 1024
"""User agents repeat: their verdicts are kept, up to this many (then forgotten at once)."""


def _compile(patterns: Iterable[str], defaults: tuple[str, ...], what: str) -> tuple[re.Pattern[str], ...]:
    """The defaults among ``patterns`` as one regex (they are written to be joined), each
    other pattern on its own: joined into one regex, inline flags and backreferences break."""
    compiled = []
    patterns = tuple(patterns)
    if defaults and patterns[: len(defaults)] == defaults:
        compiled.append(re.compile("|".join(f"(?:{p})" for p in defaults), re.IGNORECASE))
        patterns = patterns[len(defaults) :]
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except (re.error, ValueError, OverflowError, RecursionError) as exc:
            raise ValueError(f"invalid {what} pattern {pattern!r}: {exc}") from None
    return tuple(compiled)


@dataclass(frozen=True)
class Exclusions:
    """Path and user-agent regexes (searched case-insensitively) that exclude a request."""

    paths: tuple[str, ...] = ()
    user_agents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_path_re", _compile(self.paths, DEFAULT_PATHS, "excluded path"))
        object.__setattr__(
            self, "_ua_re", _compile(self.user_agents, DEFAULT_USER_AGENTS, "excluded user agent")
        )
        object.__setattr__(self, "_agents", {})

    @classmethod
    def default(cls) -> Exclusions:
        return cls(DEFAULT_PATHS, DEFAULT_USER_AGENTS)

    @classmethod
    def build(
        cls, paths: Iterable[str] = (), user_agents: Iterable[str] = (), *, defaults: bool = True
    ) -> Exclusions:
        """The user's patterns, added to the defaults unless ``defaults`` is False."""
        base_paths = DEFAULT_PATHS if defaults else ()
        base_agents = DEFAULT_USER_AGENTS if defaults else ()
        return cls((*base_paths, *paths), (*base_agents, *user_agents))

    @classmethod
    def from_settings(cls, settings: Settings) -> Exclusions:
        """The exclusions ``settings`` ask for; an invalid user pattern is ignored with a
        warning (the defaults still apply)."""
        try:
            return cls.build(
                settings.exclude_paths, settings.exclude_user_agents, defaults=settings.exclude_defaults
            )
        except ValueError as exc:
            _log.warning("exclusions.invalid", "%s; using the default exclusions only", exc)
            return cls.build(defaults=settings.exclude_defaults)

    def excludes(self, path: str, user_agent: str | None) -> bool:
        path_res: tuple[re.Pattern[str], ...] = self.__dict__["_path_re"]
        if any(pattern.search(path) for pattern in path_res):
            return True
        if not user_agent:
            return False
        agents: dict[str, bool] = self.__dict__["_agents"]
        try:
            return agents[user_agent]
        except KeyError:
            pass
        ua_res: tuple[re.Pattern[str], ...] = self.__dict__["_ua_re"]
        verdict = any(pattern.search(user_agent) for pattern in ua_res)
        if len(agents) >= _AGENTS_KEPT:  # user agents are client-chosen: stay bounded
            agents.clear()
        agents[user_agent] = verdict
        return verdict
