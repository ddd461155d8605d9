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
    ("same OTel", "---"),
    ("vs same OTel", "---:"),
    ("vs default OTel", "---:"),
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
DEFAULT_OTEL = "otel"
LEAN_OTEL = "otel-noint"
PEER_VARIANTS = ("apitally1", "apitally0", "readme", "readme-default")
APITALLY0_LOGS_PER_S = 100


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
        "sent_posts": median_of(runs, "sent_requests"),
        "non_2xx": sum(int(r["non_2xx"]) for r in runs),
        "socket_errors": sum(int(r["socket_errors"]) for r in runs),
    }


def median_of(runs: Sequence[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in runs if key in r]
    return float(statistics.median(values)) if values else math.nan


# --- which rows compare with which ------------------------------------------------------------


def reported_config(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The OpenTelemetry set-up the variant's server reported (``apps/common.py``), None when
    no run reported one or two runs disagree."""
    configs = [r["otel_config"] for r in runs if r.get("otel_config") is not None]
    if not configs or any(c != configs[0] for c in configs):
        return None
    return dict(configs[0])


def same_config_baseline(result: dict[str, Any]) -> str | None:
    """The OpenTelemetry-alone variant running the same OTel set-up as ``result``'s server:
    ``otel-noint`` when its ASGI middleware left out the internal receive/send spans, else
    ``otel`` (Flask has none); None for a server without OTel, or one that reported nothing."""
    config = result.get("otel_config")
    if not config or not config.get("otel"):
        return None
    if config.get("exclude_receive_span") and config.get("exclude_send_span"):
        return LEAN_OTEL
    return DEFAULT_OTEL


def is_spanlytics(result: dict[str, Any]) -> bool:
    return str(result["variant"]).startswith("spanlytics-")


def is_peer(result: dict[str, Any]) -> bool:
    return bool(result.get("peer")) or result["variant"] in PEER_VARIANTS


def ok_summary(results: Sequence[dict[str, Any]], name: str | None) -> dict[str, Any] | None:
    """The summary of the variant ``name`` if it ran."""
    for result in results:
        if result["variant"] == name and result["status"] == "ok":
            return dict(result["summary"])
    return None


def baseline(results: Sequence[dict[str, Any]], name: str | None, key: str = "rps_median") -> float | None:
    """``key`` of the variant ``name``'s summary; None if it did not run or has no such figure."""
    summary = ok_summary(results, name)
    value = math.nan if summary is None else float(summary.get(key, math.nan))
    return None if math.isnan(value) else value


# --- formatting -------------------------------------------------------------------------------


def ratio(value: float, base: float | None) -> str:
    if base is None or not base or math.isnan(value) or math.isnan(base):
        return "-"
    return f"{value / base:.2f}"


def number(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def difference(value: float, base: float | None, digits: int = 0) -> str:
    """``value - base`` with its sign, "-" when either is missing."""
    if base is None or math.isnan(value) or math.isnan(base):
        return "-"
    return f"{value - base:+,.{digits}f}"


def added(cpu_us: float, baseline_cpu_us: float | None) -> str:
    """CPU per request beyond the same app under the same OpenTelemetry set-up alone."""
    return difference(cpu_us, baseline_cpu_us)


def row(result: dict[str, Any], results: Sequence[dict[str, Any]]) -> list[str]:
    """One variant's cells; ``results``: the framework's, to find its baselines in."""
    name = result["variant"]
    if result["status"] != "ok":
        return [name, f"{result['status']}: {result['reason']}", *[""] * (len(COLUMNS) - 2)]
    s = result["summary"]
    same = same_config_baseline(result)
    growth = f"{s['rss_growth_mb']:+.1f}" + (" (grows)" if s["rss_growing"] else "")
    cpu = s.get("cpu_us", math.nan)
    return [
        name + (" (errors)" if s["non_2xx"] or s["socket_errors"] else ""),
        number(s["rps_median"], 0),
        f"{s['rps_min']:,.0f}-{s['rps_max']:,.0f}",
        ratio(s["rps_median"], baseline(results, "bare")),
        same or "-",
        ratio(s["rps_median"], baseline(results, same)),
        ratio(s["rps_median"], baseline(results, DEFAULT_OTEL)),
        number(cpu, 0),
        added(cpu, baseline(results, same, "cpu_us")),
        number(s.get("ours_us", math.nan), 0),
        number(s["p50_ms"]),
        number(s["p99_ms"]),
        number(s["rss_median_mb"], 1),
        number(s["rss_last_mb"], 1),
        growth,
        number(s["sent_kb"], 0) if s["sent_kb"] else "-",
    ]


def markdown(header: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(c for c, _ in header) + " |", "| " + " | ".join(a for _, a in header) + " |"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def load_line(settings: dict[str, Any]) -> str:
    return (
        f"wrk -t{settings['threads']} -c{settings['connections']}, {settings['rounds']} round(s) of "
        f"{settings['duration']} s (warm-up {settings.get('warmup', '?')} s), medians over rounds"
    )


def framework_table(framework: str, results: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    """One framework's markdown: a heading naming the load, the table, notes, then the
    spanlytics variants against the peers."""
    shown = [r for r in results if r["status"] != "unsupported"]
    endpoint = "POST /items, 1 KB JSON body" if settings["endpoint"] == "post" else "GET /items/1, ~1 KB JSON"
    lines = [
        f"### {framework} ({SERVERS[framework]}): {endpoint}",
        "",
        f"{load_line(settings)}. same OTel: the OpenTelemetry-alone variant with the OTel set-up the "
        "variant's server reported running (vs same OTel, added µs against it); vs default OTel: "
        "against otel, the instrumentor's defaults. CPU µs/req: every process of the server per "
        "request served, its queued work included; ours µs: the threads named spanlytics-*.",
        "",
        *markdown(COLUMNS, [row(r, shown) for r in shown]),
    ]
    lines += notes(results)
    peers = peers_table(framework, shown)
    return "\n".join(lines) + "\n" + (f"\n{peers}" if peers else "")


def notes(results: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    unsupported = [f"{r['variant']} ({r['reason']})" for r in results if r["status"] == "unsupported"]
    if unsupported:
        out.append(f"Not run on this framework: {', '.join(unsupported)}.")
    unreported = [
        r["variant"]
        for r in results
        if r["status"] == "ok" and is_spanlytics(r) and same_config_baseline(r) is None
    ]
    if unreported:
        out.append(f"No same-configuration baseline (OTel set-up not reported): {', '.join(unreported)}.")
    for r in results:
        s = r.get("summary") or {}
        if s.get("non_2xx") or s.get("socket_errors"):
            out.append(
                f"{r['variant']}: {s['non_2xx']} non-2xx responses, {s['socket_errors']} socket errors."
            )
    return ["", *out] if out else []


# --- against the peers ------------------------------------------------------------------------

PEER_COLUMNS = (
    ("spanlytics", "---"),
    ("peer", "---"),
    ("req/s ratio", "---:"),
    ("CPU µs/req diff", "---:"),
    ("spanlytics sent KB", "---:"),
    ("peer sent KB", "---:"),
)


def peer_note(result: dict[str, Any], framework: str) -> str:
    """What a peer actually delivered, and what it leaves out by design."""
    name, s = result["variant"], result["summary"]
    posts = s.get("sent_posts", math.nan)
    sent = f"{name}: {number(s['sent_kb'], 0)} KB in {number(posts, 0)} POSTs to the stub"
    if name == "apitally1":
        return f"{sent} (OTLP: spans with headers and bodies)."
    if name == "apitally0":
        share = min(1.0, APITALLY0_LOGS_PER_S / s["rps_median"]) if s["rps_median"] else math.nan
        bodies = "; no response bodies on Flask" if framework == "flask" else ""
        return (
            f"{sent}; its request log keeps at most {APITALLY0_LOGS_PER_S} requests a second, "
            f"here about {number(100 * share, 0)}% of them{bodies}."
        )
    if name.startswith("readme"):
        buffer = "100 logs per POST" if name == "readme" else "a POST (and a thread) per request"
        return f"{sent}; logs identified requests only (every wrk request names a consumer), {buffer}."
    return f"{sent}."


def peers_table(framework: str, results: Sequence[dict[str, Any]]) -> str:
    """Each spanlytics variant that ran against each peer that ran: req/s ratio (spanlytics
    over peer, above 1: spanlytics serves more) and CPU per request difference (spanlytics
    minus peer, negative: spanlytics costs less). Empty when either side is missing."""
    ours = [r for r in results if r["status"] == "ok" and is_spanlytics(r)]
    peers = [r for r in results if r["status"] == "ok" and is_peer(r)]
    if not ours or not peers:
        return ""
    rows = []
    for mine in ours:
        for peer in peers:
            a, b = mine["summary"], peer["summary"]
            rows.append(
                [
                    mine["variant"],
                    peer["variant"],
                    ratio(a["rps_median"], b["rps_median"]),
                    difference(a.get("cpu_us", math.nan), b.get("cpu_us", math.nan)),
                    number(a["sent_kb"], 0) if a["sent_kb"] else "-",
                    number(b["sent_kb"], 0) if b["sent_kb"] else "-",
                ]
            )
    lines = [
        f"#### {framework}: against the peers",
        "",
        "req/s ratio: spanlytics over the peer (above 1: spanlytics serves more); CPU µs/req diff: "
        "spanlytics minus the peer (negative: spanlytics costs less).",
        "",
        *markdown(PEER_COLUMNS, rows),
        "",
        *(f"- {peer_note(peer, framework)}" for peer in peers),
    ]
    return "\n".join(lines) + "\n"


# --- the whole report, and the summary for the project README ----------------------------------


def results_by_framework(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for result in document["results"]:
        grouped.setdefault(result["framework"], []).append(result)
    return grouped


def environment_markdown(environment: dict[str, Any], settings: dict[str, Any] | None = None) -> str:
    env, v = environment, environment["versions"]
    added_baselines = (settings or {}).get("baselines_added") or []
    return "\n".join(
        [
            "## Request-path benchmark",
            "",
            f"- {env['date']}, {env.get('cpu_model', 'CPU unknown')}, {env['cpus']} CPUs, {env['machine']}, "
            f"Python {env['python']}",
            f"- OpenTelemetry SDK {v['opentelemetry-sdk']}, instrumentation "
            f"{v['opentelemetry-instrumentation']}; spanlytics {v['spanlytics']}",
            f"- apitally 1.x {v['apitally 1.x']}; apitally 0.x {v['apitally 0.x']}; "
            f"readme-metrics {v['readme-metrics']}",
            f"- FastAPI {v['fastapi']}, Starlette {v['starlette']}, Flask {v['flask']}; "
            f"uvicorn {v['uvicorn']}, gunicorn {v['gunicorn']}; wrk {v['wrk']}",
            *(
                [f"- added as same-configuration baselines: {', '.join(added_baselines)}"]
                if added_baselines
                else []
            ),
            "",
        ]
    )


SUMMARY_COLUMNS = (
    ("framework", "---"),
    ("spanlytics", "---"),
    ("same OTel", "---"),
    ("req/s OTel", "---:"),
    ("req/s spanlytics", "---:"),
    ("vs same OTel", "---:"),
    ("vs default OTel", "---:"),
    ("added CPU µs/req", "---:"),
    ("ours µs", "---:"),
    ("p99 ms OTel / spanlytics", "---:"),
    ("RSS MB vs same OTel", "---:"),
)


def summary_row(result: dict[str, Any], results: Sequence[dict[str, Any]]) -> list[str]:
    s, same = result["summary"], same_config_baseline(result)
    base = ok_summary(results, same) or {}
    nan = math.nan
    return [
        result["framework"],
        result["variant"],
        same or "-",
        number(base.get("rps_median", nan), 0),
        number(s["rps_median"], 0),
        ratio(s["rps_median"], baseline(results, same)),
        ratio(s["rps_median"], baseline(results, DEFAULT_OTEL)),
        added(s.get("cpu_us", nan), baseline(results, same, "cpu_us")),
        number(s.get("ours_us", nan), 0),
        f"{number(base.get('p99_ms', nan), 1)} / {number(s['p99_ms'], 1)}",
        difference(s["rss_median_mb"], baseline(results, same, "rss_median_mb"), 1),
    ]


def summary_table(document: dict[str, Any]) -> str:
    """One compact table for the project README: a row per framework and spanlytics variant,
    then a line naming the machine, the versions and the load."""
    rows = [
        summary_row(r, results)
        for results in results_by_framework(document).values()
        for r in results
        if r["status"] == "ok" and is_spanlytics(r)
    ]
    env, settings = document["environment"], document["settings"]
    v = env["versions"]
    endpoint = "POST /items (1 KB JSON)" if settings["endpoint"] == "post" else "GET /items/1 (~1 KB JSON)"
    machine = (
        f"{env.get('cpu_model', 'CPU unknown')}, {env['cpus']} cores; Python {env['python']}; "
        f"OpenTelemetry SDK {v['opentelemetry-sdk']}, instrumentation {v['opentelemetry-instrumentation']}; "
        f"{endpoint}, {load_line(settings)}; {env['date']}."
    )
    return "\n".join([*markdown(SUMMARY_COLUMNS, rows), "", machine]) + "\n"


def render(document: dict[str, Any], summary: bool = False) -> str:
    """The markdown of a harness run (what ``--json`` wrote): every table, or the summary."""
    if summary:
        return summary_table(document)
    parts = [environment_markdown(document["environment"], document["settings"])]
    settings = document["settings"]
    parts += [framework_table(f, rs, settings) for f, rs in results_by_framework(document).items()]
    return "\n".join(parts)
