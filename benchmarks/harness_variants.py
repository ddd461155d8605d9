"""The variants the request-path harness compares, and what each server process is given.

A variant is a name ``BENCH_VARIANT`` passes to the app (``benchmarks/apps/common.py`` holds
the instrumentation of each), the frameworks it runs on and the venv it runs in: the
project's, or a peer's own (``harness_peers.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FRAMEWORKS = ("starlette", "fastapi", "flask")
ASGI = ("starlette", "fastapi")


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str
    frameworks: tuple[str, ...] = FRAMEWORKS
    peer: str | None = None
    destination: str | None = None  # the spanlytics destination it needs

    def unavailable(self) -> str | None:
        """Why the variant cannot run with the spanlytics installed (None: it can)."""
        if self.destination is None:
            return None
        from spanlytics.destinations.registry import KNOWN_DESTINATIONS

        return None if self.destination in KNOWN_DESTINATIONS else "destination not available"


VARIANTS = {
    v.name: v
    for v in (
        Variant("bare", "the app without instrumentation"),
        Variant("otel", "the framework's OTel instrumentor, BatchSpanProcessor to a discarding exporter"),
        Variant("otel-noint", "otel without the ASGI receive/send spans (exclude_spans)", ASGI),
        Variant("spanlytics-metrics", "otel + spanlytics, no header/body capture, local store"),
        Variant("spanlytics-local", "otel + spanlytics, full logging (headers, bodies, masked), local store"),
        Variant("spanlytics-readme", "otel + spanlytics, full logging to the ReadMe destination (stub)"),
        Variant("spanlytics-http", "otel + spanlytics, full logging to the http destination (stub)"),
        Variant(
            "spanlytics-apitally",
            "otel + spanlytics, full logging to the Apitally destination (stub)",
            destination="apitally",
        ),
        Variant(
            "spanlytics-apitally1",
            "otel + spanlytics, full logging to the Apitally destination's 1.x OTLP protocol (stub)",
            destination="apitally",
        ),
        Variant(
            "spanlytics-otel",
            "otel + spanlytics, full logging as OTel log records and consumer histograms (OTLP to the stub)",
            destination="otel",
        ),
        Variant(
            "apitally1", "Apitally 1.0.0 (OTel-based), headers and bodies, OTLP to the stub", peer="apitally1"
        ),
        Variant(
            "apitally0", "Apitally 0.25.1 middleware, request log with headers and bodies", peer="apitally0"
        ),
        Variant("readme", "readme-metrics 3.4.0 Flask extension, buffer_length=100", ("flask",), "readme"),
        Variant("readme-default", "readme-metrics 3.4.0, default buffer (1)", ("flask",), "readme"),
    )
}


CONFIG_FILE = "otel-config.json"


Names = tuple[str, ...]


def with_baselines(variants: Sequence[str], frameworks: Sequence[str]) -> tuple[Names, Names]:
    """``variants`` plus the OpenTelemetry-alone variants a spanlytics variant may be compared
    with (its same-configuration baseline is only known once its server has run): ``otel``,
    and ``otel-noint`` when an ASGI framework runs. Returns them and the ones added."""
    needed = ["otel"] + (["otel-noint"] if set(frameworks) & set(ASGI) else [])
    if not any(name.startswith("spanlytics-") for name in variants):
        return tuple(variants), ()
    added = tuple(name for name in needed if name not in variants)
    return (*added, *variants), added


def app_module(framework: str) -> str:
    return f"benchmarks.apps.{framework}_app"


def server_environment(variant: Variant, run_dir: Path, stub_url: str) -> dict[str, str]:
    """What one server process of ``variant`` is told: where its store, spool and temp
    files go (``run_dir``, deleted after the run) and where each tool's stub is."""
    return {
        "BENCH_VARIANT": variant.name,
        "BENCH_DB": str(run_dir / "spanlytics.db"),
        "BENCH_SPOOL_DIR": str(run_dir / "spool"),
        "BENCH_STUB_URL": stub_url,
        "BENCH_CONFIG_OUT": str(run_dir / CONFIG_FILE),  # the OTel set-up it runs (apps/common.py)
        "APITALLY_OTLP_ENDPOINT": stub_url,  # apitally 1.x: apitally/shared/config.py
        "APITALLY_HUB_BASE_URL": stub_url,  # apitally 0.x: apitally/client/client_base.py
        "README_METRICS_SERVER": stub_url,  # readme-metrics: readme_metrics/publisher.py
        "TMPDIR": str(run_dir),  # Apitally's spool and instance lock files
    }
