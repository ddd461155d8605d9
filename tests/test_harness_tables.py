"""The request-path harness's tables (benchmarks/harness_tables.py) on synthetic results:
which baseline a variant is compared with, the ratios and differences, missing figures."""

from __future__ import annotations

import json
import math
from typing import Any

from benchmarks.harness_tables import (
    COLUMNS,
    added,
    peers_table,
    ratio,
    render,
    reported_config,
    row,
    same_config_baseline,
    summarize,
    summary_table,
)
from benchmarks.harness_variants import with_baselines

KEPT = {"otel": True, "exclude_receive_span": False, "exclude_send_span": False}
EXCLUDED = {"otel": True, "exclude_receive_span": True, "exclude_send_span": True}
WSGI = {"otel": True, "exclude_receive_span": None, "exclude_send_span": None}
NO_OTEL = {"otel": False, "exclude_receive_span": None, "exclude_send_span": None}
SETTINGS = {"endpoint": "post", "threads": 1, "connections": 16, "rounds": 1, "duration": 2, "warmup": 1}
ENVIRONMENT = {
    "date": "2026-12-01T18:00:00+00:00",
    "cpus": 2,
    "cpu_model": "Test CPU 9000",
    "machine": "Linux",
    "python": "3.11.7",
    "versions": {
        "opentelemetry-sdk": "1.45.1",
        "opentelemetry-instrumentation": "0.66b1",
        "spanlytics": "0.1.0",
        "apitally 1.x": "1.0.0",
        "apitally 0.x": "0.25.1",
        "readme-metrics": "3.4.0",
        "fastapi": "x",
        "starlette": "x",
        "flask": "x",
        "uvicorn": "x",
        "gunicorn": "x",
        "wrk": "x",
    },
}


def run(
    rps: float, cpu: float | None = None, config: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    measured = {"cpu_us_per_request": cpu, "ours_us_per_request": cpu / 4} if cpu is not None else {}
    return {
        "rps": rps,
        "p50_ms": 5.0,
        "p99_ms": 1e5 / rps,
        "requests": int(rps * 2),
        "non_2xx": 0,
        "socket_errors": 0,
        "rss_median_mb": 40.0 + rps / 1000,
        "rss_last_mb": 40.0,
        "rss_growth_mb": 0.5,
        "sent_bytes": 0,
        "sent_requests": 0,
        "otel_config": config,
        **measured,
        **extra,
    }


def result(framework: str, variant: str, *runs: dict[str, Any], peer: str | None = None) -> dict[str, Any]:
    return {
        "framework": framework,
        "variant": variant,
        "peer": peer,
        "status": "ok",
        "reason": None,
        "runs": list(runs),
        "summary": summarize(runs),
        "otel_config": reported_config(runs),
    }


def starlette_results() -> list[dict[str, Any]]:
    return [
        result("starlette", "otel", run(1000, 800, KEPT)),
        result("starlette", "otel-noint", run(1500, 600, EXCLUDED)),
        result("starlette", "spanlytics-local", run(900, 1000, KEPT)),
        result("starlette", "spanlytics-metrics", run(1200, 750, EXCLUDED)),
        result("starlette", "apitally0", run(2000, 500, NO_OTEL, sent_bytes=40 * 1024, sent_requests=3)),
    ]


def cells(results: list[dict[str, Any]], variant: str) -> dict[str, str]:
    mine = next(r for r in results if r["variant"] == variant)
    return dict(zip((c for c, _ in COLUMNS), row(mine, results), strict=True))


def test_the_baseline_is_the_otel_variant_of_the_reported_set_up() -> None:
    assert same_config_baseline({"otel_config": KEPT}) == "otel"
    assert same_config_baseline({"otel_config": EXCLUDED}) == "otel-noint"
    assert same_config_baseline({"otel_config": WSGI}) == "otel"
    half = {**EXCLUDED, "exclude_send_span": False}  # still sends spans otel-noint does not
    assert same_config_baseline({"otel_config": half}) == "otel"
    assert same_config_baseline({"otel_config": NO_OTEL}) is None
    assert same_config_baseline({"otel_config": None}) is None


def test_runs_that_disagree_or_report_nothing_have_no_config() -> None:
    assert reported_config([run(1, 1, KEPT), run(1, 1, KEPT)]) == KEPT
    assert reported_config([run(1, 1, KEPT), run(1, 1, EXCLUDED)]) is None
    assert reported_config([run(1, 1)]) is None


def test_ratios_and_added_cpu_are_against_the_same_configuration() -> None:
    results = starlette_results()
    local, metrics = cells(results, "spanlytics-local"), cells(results, "spanlytics-metrics")
    assert (local["same OTel"], local["vs same OTel"], local["vs default OTel"]) == ("otel", "0.90", "0.90")
    assert local["added µs"] == "+200"
    assert (metrics["same OTel"], metrics["vs same OTel"], metrics["vs default OTel"]) == (
        "otel-noint",
        "0.80",
        "1.20",
    )
    assert metrics["added µs"] == "+150"
    peer = cells(results, "apitally0")  # no OpenTelemetry: nothing the same to compare with
    assert (peer["same OTel"], peer["vs same OTel"], peer["added µs"], peer["vs default OTel"]) == (
        "-",
        "-",
        "-",
        "2.00",
    )


def test_missing_figures_show_as_a_dash() -> None:
    assert ratio(1.0, None) == ratio(1.0, 0.0) == ratio(math.nan, 2.0) == ratio(1.0, math.nan) == "-"
    assert added(math.nan, 100.0) == added(100.0, None) == added(100.0, math.nan) == "-"
    results = [
        result("flask", "otel", run(1000, None, WSGI)),
        result("flask", "spanlytics-local", run(800, 900, WSGI)),
    ]
    assert math.isnan(results[0]["summary"]["cpu_us"])  # runs saved before CPU was measured
    local = cells(results, "spanlytics-local")
    assert (local["vs same OTel"], local["added µs"], local["CPU µs/req"]) == ("0.80", "-", "900")


def test_peers_table_pairs_every_spanlytics_variant_with_every_peer() -> None:
    results = starlette_results()
    for r in results:
        r["peer"] = "apitally0" if r["variant"] == "apitally0" else None
    table = peers_table("starlette", results)
    assert "| spanlytics-local | apitally0 | 0.45 | +500 | - | 40 |" in table
    assert "| spanlytics-metrics | apitally0 | 0.60 | +250 | - | 40 |" in table
    assert "apitally0: 40 KB in 3 POSTs" in table and "about 5% of them" in table  # 100 of 2,000/s
    assert peers_table("starlette", results[:4]) == ""  # no peer ran
    assert peers_table("starlette", results[-1:]) == ""  # no spanlytics variant ran


def test_summary_has_a_row_per_spanlytics_variant_and_names_the_machine() -> None:
    flask = [
        result("flask", "otel", run(1000, 800, WSGI)),
        result("flask", "spanlytics-local", run(500, 1300, WSGI)),
    ]
    document = {"environment": ENVIRONMENT, "settings": SETTINGS, "results": starlette_results() + flask}
    lines = summary_table(document).splitlines()
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[:3] for r in rows] == [
        ["| starlette", "spanlytics-local", "otel"],
        ["| starlette", "spanlytics-metrics", "otel-noint"],
        ["| flask", "spanlytics-local", "otel"],
    ]
    flask_row = (
        "| flask | spanlytics-local | otel | 1,000 | 500 | 0.50 | 0.50 | +500 | 325 | 100.0 / 200.0 | -0.5 |"
    )
    assert rows[2] == flask_row
    assert "Test CPU 9000, 2 cores; Python 3.11.7; OpenTelemetry SDK 1.45.1" in lines[-1]


def test_render_from_saved_json_gives_the_same_tables() -> None:
    document = {"environment": ENVIRONMENT, "settings": SETTINGS, "results": starlette_results()}
    saved = json.loads(json.dumps(document))
    assert render(saved) == render(document)
    assert "| variant | req/s | min-max | vs bare | same OTel | vs same OTel | vs default OTel |" in render(
        saved
    )
    assert "#### starlette: against the peers" in render(saved)
    assert render(saved, summary=True) == summary_table(document)


def test_spanlytics_variants_bring_their_possible_baselines() -> None:
    assert with_baselines(("spanlytics-local",), ("starlette", "flask")) == (
        ("otel", "otel-noint", "spanlytics-local"),
        ("otel", "otel-noint"),
    )
    assert with_baselines(("spanlytics-local", "otel"), ("flask",)) == (("spanlytics-local", "otel"), ())
    assert with_baselines(("bare", "readme"), ("flask",)) == (("bare", "readme"), ())
