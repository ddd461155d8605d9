"""Requests that are neither counted nor logged: health checks, probes, favicon, robots.txt.

>>> Exclusions.default().excludes("/healthz", "Mozilla/5.0")
True
>>> Exclusions.default().excludes("/orders", "kube-probe/1.29")
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_PATHS = (
    r"^(?:/[^/]+)*/(?:health|healthz|healthcheck|health-check|_health|ping|ready|readyz|readiness"
    r"|live|livez|liveness|alive)/?$",
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


def _compile(patterns: Iterable[str], what: str) -> re.Pattern[str] | None:
    patterns = tuple(patterns)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid {what} pattern {pattern!r}: {exc}") from None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None


@dataclass(frozen=True)
class Exclusions:
    """Path and user-agent regexes (searched case-insensitively) that exclude a request."""

    paths: tuple[str, ...] = ()
    user_agents: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_path_re", _compile(self.paths, "excluded path"))
        object.__setattr__(self, "_ua_re", _compile(self.user_agents, "excluded user agent"))

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

    def excludes(self, path: str, user_agent: str | None) -> bool:
        path_re: re.Pattern[str] | None = self.__dict__["_path_re"]
        if path_re is not None and path_re.search(path):
            return True
        ua_re: re.Pattern[str] | None = self.__dict__["_ua_re"]
        return bool(user_agent and ua_re is not None and ua_re.search(user_agent))
