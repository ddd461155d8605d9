"""Medians over rounds and the markdown table of the request-path harness.

Pure functions over the harness's result dictionaries (the same ones ``--json`` writes), so
the table can be rebuilt from a saved JSON file.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

GROWTH_FLAG_MB = 5.0
GROWTH_FLAG_SHARE = 0.10
SERVERS = {
    "starlette": "uvicorn, 1 worker",
    "fastapi": "uvicorn, 1 worker",
    "flask": "gunicorn -w 1, sync worker",
}
COLUMNS = (
    ("variant", "---"),
    ("req/s", "---:"),
    ("min-max", "---:"),
    ("vs bare", "---:"),
    ("vs otel", "---:"),
    ("CPU µs/req", "---:"),
    ("added µs", "---:"),
    ("ours µs", "---:"),
    ("p50 ms", "---:"),
    ("p99 ms", "---:"),
    ("RSS MB", "---:"),
    ("RSS last", "---:"),
    ("RSS growth", "---:"),
    ("sent KB", "---:"),
)


def rss_growing(run: dict[str, Any]) -> bool:
    """RSS grew over the measured run by more than 5 MB and 10%: a queue or cache filling up."""
    growth = float(run["rss_growth_mb"])
    first = float(run["rss_last_mb"]) - growth
    return growth > max(GROWTH_FLAG_MB, GROWTH_FLAG_SHARE * first)


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds (min and max for req/s; growth: the largest of any round)."""
    rps = [float(r["rps"]) for r in runs]

    def median(key: str) -> float:
        return float(statistics.median(float(r[key]) for r in runs))

    return {
        "rounds": len(runs),
        "rps_median": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "rss_median_mb": median("rss_median_mb"),
        "rss_last_mb": median("rss_last_mb"),
        "rss_growth_mb": max(float(r["rss_growth_mb"]) for r in runs),
        "rss_growing": any(rss_growing(r) for r in runs),
        # runs saved before CPU was measured have none: NaN, shown as "-"
        "cpu_us": median_of(runs, "cpu_us_per_request"),
        "ours_us": median_of(runs, "ours_us_per_request"),
        "sent_kb": median("sent_bytes") / 1024,
        "non_2xx": sum(int(r["non_2xx"]) for r in runs),
        "socket_errors": sum(int(r["socket_errors"]) for r in runs),
    }


def median_of(runs: Sequence[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in runs if key in r]
    return float(statistics.median(values)) if values else math.nan


def ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}" if base else "-"


def number(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def added(cpu_us: float, otel_cpu_us: float | None) -> str:
    """CPU per request beyond the same app under OpenTelemetry alone."""
    if otel_cpu_us is None or math.isnan(cpu_us) or math.isnan(otel_cpu_us):
        return "-"
    return f"{cpu_us - otel_cpu_us:+,.0f}"


def row(
    result: dict[str, Any], bare: float | None, otel: float | None, otel_cpu: float | None = None
) -> list[str]:
    name = result["variant"]
    if result["status"] != "ok":
        return [name, f"{result['status']}: {result['reason']}", *[""] * (len(COLUMNS) - 2)]
    s = result["summary"]
    growth = f"{s['rss_growth_mb']:+.1f}" + (" (grows)" if s["rss_growing"] else "")
    return [
        name + (" (errors)" if s["non_2xx"] or s["socket_errors"] else ""),
        number(s["rps_median"], 0),
        f"{s['rps_min']:,.0f}-{s['rps_max']:,.0f}",
        ratio(s["rps_median"], bare),
        ratio(s["rps_median"], otel),
        number(s.get("cpu_us", math.nan), 0),
        added(s.get("cpu_us", math.nan), otel_cpu),
        number(s.get("ours_us", math.nan), 0),
        number(s["p50_ms"]),
        number(s["p99_ms"]),
        number(s["rss_median_mb"], 1),
        number(s["rss_last_mb"], 1),
        growth,
        number(s["sent_kb"], 0) if s["sent_kb"] else "-",
    ]


def baseline(results: Sequence[dict[str, Any]], name: str, key: str = "rps_median") -> float | None:
    for result in results:
        if result["variant"] == name and result["status"] == "ok":
            value = float(result["summary"].get(key, math.nan))
            return None if math.isnan(value) else value
    return None


def framework_table(framework: str, results: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    """One framework's markdown: a heading naming the load, the table, then notes."""
    shown = [r for r in results if r["status"] != "unsupported"]
    bare, otel = baseline(shown, "bare"), baseline(shown, "otel")
    otel_cpu = baseline(shown, "otel", "cpu_us")
    endpoint = "POST /items, 1 KB JSON body" if settings["endpoint"] == "post" else "GET /items/1, ~1 KB JSON"
    lines = [
        f"### {framework} ({SERVERS[framework]}): {endpoint}",
        "",
        f"wrk -t{settings['threads']} -c{settings['connections']}, {settings['rounds']} round(s) of "
        f"{settings['duration']} s, medians over rounds. CPU µs/req: every process of the server "
        "(app, OpenTelemetry, our threads) per request served, its queued work included; added µs: "
        "beyond the otel variant; ours µs: the threads named spanlytics-*.",
        "",
        "| " + " | ".join(c for c, _ in COLUMNS) + " |",
        "| " + " | ".join(a for _, a in COLUMNS) + " |",
    ]
    lines += ["| " + " | ".join(row(r, bare, otel, otel_cpu)) + " |" for r in shown]
    lines += notes(results)
    return "\n".join(lines) + "\n"


def notes(results: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    unsupported = [f"{r['variant']} ({r['reason']})" for r in results if r["status"] == "unsupported"]
    if unsupported:
        out.append(f"Not run on this framework: {', '.join(unsupported)}.")
    for r in results:
        s = r.get("summary") or {}
        if s.get("non_2xx") or s.get("socket_errors"):
            out.append(
                f"{r['variant']}: {s['non_2xx']} non-2xx responses, {s['socket_errors']} socket errors."
            )
    return ["", *out] if out else []
