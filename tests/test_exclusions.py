"""exclusions.py: default health-check paths and probe user agents, user patterns, wiring."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

import spanlytics
import spanlytics.config
from spanlytics.config import Settings
from spanlytics.destinations.local import iter_records
from spanlytics.exclusions import DEFAULT_PATHS, DEFAULT_USER_AGENTS, Exclusions
from tests.conftest import Pipeline

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.mark.parametrize(
    "path",
    [
        "/health",
        "/healthz",
        "/healthz/",
        "/HEALTH",
        "/api/v1/health",
        "/readyz",
        "/livez",
        "/ping",
        "/_health",
        "/health-check",
        "/favicon.ico",
        "/static/favicon.ico",
        "/robots.txt",
        "/.well-known/openid-configuration",
    ],
)
def test_default_paths_are_excluded(path: str) -> None:
    assert Exclusions.default().excludes(path, BROWSER)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/items",
        "/healthy-food",
        "/pingpong",
        "/api/health/details",  # a real resource under a health prefix, not a probe
        "/healthz.json",
        "/v1/robots.txt",  # only the site-root robots.txt is for crawlers
        "/docs/.well-known/x",
        "/favicon.ico.bak",
    ],
)
def test_ordinary_paths_are_not_excluded(path: str) -> None:
    assert not Exclusions.default().excludes(path, BROWSER)
    assert not Exclusions.default().excludes(path, None)


@pytest.mark.parametrize(
    "agent",
    ["kube-probe/1.29", "ELB-HealthChecker/2.0", "GoogleHC/1.0", "Prometheus/2.51.0", "Envoy/HC"],
)
def test_probe_user_agents_are_excluded_on_any_path(agent: str) -> None:
    assert Exclusions.default().excludes("/orders", agent)


@pytest.mark.parametrize(
    "agent",
    [
        BROWSER,
        "curl/8.5.0",
        "python-httpx/0.28.1",
        "Mozilla/5.0 (compatible; not-kube-probe/1.0)",  # anchored: only a leading kube-probe
        "",
        None,
    ],
)
def test_ordinary_user_agents_are_not_excluded(agent: str | None) -> None:
    assert not Exclusions.default().excludes("/orders", agent)


def test_build_adds_user_patterns_to_the_defaults() -> None:
    exclusions = Exclusions.build(paths=(r"^/internal/",), user_agents=(r"^SyntheticMonitor/",))
    assert exclusions.paths == (*DEFAULT_PATHS, r"^/internal/")
    assert exclusions.user_agents == (*DEFAULT_USER_AGENTS, r"^SyntheticMonitor/")
    assert exclusions.excludes("/internal/jobs", BROWSER)
    assert exclusions.excludes("/healthz", BROWSER)  # defaults kept
    assert exclusions.excludes("/orders", "syntheticmonitor/3")  # case-insensitive
    assert exclusions.excludes("/orders", "kube-probe/1.29")
    assert not exclusions.excludes("/api/internal/jobs", BROWSER)


def test_build_without_defaults_keeps_only_user_patterns() -> None:
    exclusions = Exclusions.build(paths=(r"^/internal/",), defaults=False)
    assert exclusions.paths == (r"^/internal/",)
    assert exclusions.user_agents == ()
    assert exclusions.excludes("/internal/x", None)
    assert not exclusions.excludes("/healthz", BROWSER)
    assert not exclusions.excludes("/orders", "kube-probe/1.29")
    assert not Exclusions.build(defaults=False).excludes("/healthz", "kube-probe/1.29")


@pytest.mark.parametrize(
    ("paths", "agents", "named"),
    [
        (("^/ok", "unclosed("), (), "unclosed("),
        ((), ("[z-a]",), "[z-a]"),
    ],
)
def test_invalid_pattern_raises_value_error_naming_it(
    paths: tuple[str, ...], agents: tuple[str, ...], named: str
) -> None:
    with pytest.raises(ValueError, match="pattern") as info:
        Exclusions.build(paths, agents)
    assert repr(named) in str(info.value)


def test_pattern_with_inline_global_flag_is_valid_or_a_value_error() -> None:
    # "(?i)^/internal" compiles on its own, but not once joined with the other patterns.
    try:
        exclusions = Exclusions.build(paths=("(?i)^/internal",))
    except ValueError:
        return  # rejected cleanly is acceptable
    assert exclusions.excludes("/INTERNAL/x", None)


def test_backreferences_in_user_patterns_refer_to_their_own_group() -> None:
    exclusions = Exclusions.build(paths=(r"^/(a)\1$", r"^/(b)\1$"), defaults=False)
    assert exclusions.excludes("/aa", None)
    assert exclusions.excludes("/bb", None)


def test_settings_with_invalid_env_pattern_warn_and_fall_back_to_defaults(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SPANLYTICS_EXCLUDE_PATHS", "^/internal/,broken[")
    with caplog.at_level(logging.WARNING, "spanlytics"):
        exclusions = Exclusions.from_settings(Settings.resolve())
    assert exclusions == Exclusions.default()
    assert exclusions.excludes("/healthz", BROWSER)
    assert not exclusions.excludes("/internal/x", BROWSER)
    assert "'broken['" in caplog.text
    assert "default exclusions" in caplog.text


def test_settings_with_inline_flag_env_pattern_do_not_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANLYTICS_EXCLUDE_PATHS", "(?i)^/internal/")
    exclusions = Exclusions.from_settings(Settings.resolve())  # must never raise at start-up
    assert exclusions.excludes("/healthz", BROWSER)


def _items_app(provider: TracerProvider) -> FastAPI:
    app = FastAPI()

    @app.get("/items")
    def items() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "up"}

    @app.get("/internal/jobs")
    def jobs() -> dict[str, int]:
        return {"jobs": 0}

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    return spanlytics.instrument_app(app)


def test_health_checks_and_probes_produce_no_records(pipeline: Pipeline) -> None:
    client = TestClient(_items_app(pipeline.provider))
    assert client.get("/healthz").json() == {"status": "up"}
    assert client.get("/favicon.ico").status_code == 404
    assert client.get("/items", headers={"User-Agent": "kube-probe/1.29"}).json() == {"ok": True}
    assert client.get("/items", headers={"User-Agent": BROWSER}).json() == {"ok": True}

    records = pipeline.records()
    assert [(r.path, r.user_agent) for r in records] == [("/items", BROWSER)]
    assert pipeline.processor.exporter.stats()["excluded"] == 3
    # Excluded from analytics only: the app's own exporter still gets every server span.
    servers = [s for s in pipeline.user_exporter.get_finished_spans() if s.kind.name == "SERVER"]
    assert len(servers) == 4


def _configured_run(tmp_path: Path, requests: list[tuple[str, str]]) -> tuple[list[str], dict[str, int]]:
    provider = TracerProvider()
    db = tmp_path / "excl.db"
    processor = spanlytics.configure(tracer_provider=provider, local_path=str(db))
    assert processor is not None
    client = TestClient(_items_app(provider))
    for path, agent in requests:
        assert client.get(path, headers={"User-Agent": agent}).status_code == 200
    assert processor.force_flush()
    stats = processor.exporter.stats()
    provider.shutdown()
    return sorted(r.path for r in iter_records(db)), stats


def test_exclude_paths_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPANLYTICS_EXCLUDE_PATHS", r"^/internal/")
    monkeypatch.setenv("SPANLYTICS_EXCLUDE_USER_AGENTS", r"^SyntheticMonitor/")
    paths, stats = _configured_run(
        tmp_path,
        [
            ("/internal/jobs", BROWSER),
            ("/healthz", BROWSER),
            ("/items", "SyntheticMonitor/2.1"),
            ("/items", BROWSER),
        ],
    )
    assert paths == ["/items"]
    assert stats["excluded"] == 3


def test_exclude_defaults_off_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPANLYTICS_EXCLUDE_DEFAULTS", "false")
    monkeypatch.setenv("SPANLYTICS_EXCLUDE_PATHS", r"^/internal/")
    paths, stats = _configured_run(
        tmp_path, [("/internal/jobs", BROWSER), ("/healthz", "kube-probe/1.29"), ("/items", BROWSER)]
    )
    assert paths == ["/healthz", "/items"]
    assert stats["excluded"] == 1


def test_user_agent_verdicts_are_kept_within_a_bound() -> None:
    exclusions = Exclusions.build(user_agents=[r"^bot-7"])
    agents = [f"bot-{i}" for i in range(3000)]
    verdicts = [exclusions.excludes("/orders", agent) for agent in agents]
    assert verdicts == [agent.startswith("bot-7") for agent in agents]
    assert len(exclusions.__dict__["_agents"]) <= 1024
    # asked again, the kept verdicts are the same
    assert [exclusions.excludes("/orders", agent) for agent in agents[-10:]] == verdicts[-10:]


def test_defaults_joined_still_stand_beside_a_user_pattern_with_an_inline_flag() -> None:
    exclusions = Exclusions.build(paths=["(?i)^/internal/"])
    assert exclusions.excludes("/Internal/x", None)
    assert exclusions.excludes("/api/v1/healthz", None)
    assert not exclusions.excludes("/api/v1/users/ping", None)
