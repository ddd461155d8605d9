"""benchmarks/harness.py, CI-sized: it runs end to end, so the harness cannot rot.

One round of one second on Starlette (uvicorn) and Flask (gunicorn): spanlytics' full local
logging, the OpenTelemetry baselines the harness adds for it (``otel``, ``otel-noint``), plus
one peer in a venv created from scratch here (readme, the quickest to install), so the
peer-venv path is exercised on every run. Nothing is timed against a threshold: every variant
that runs must have served requests and reported its OTel set-up, the tables must be there,
that is all. wrk comes from apt-get when missing (CI runs as root).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = str(ROOT / "benchmarks" / "harness.py")
FRAMEWORKS = ("starlette", "flask")
REQUESTED = ("spanlytics-local", "readme")
BASELINES = ("otel", "otel-noint")  # added by the harness: a spanlytics variant is requested
SUPPORTED = {"readme": ("flask",), "otel-noint": ("starlette",)}


def test_harness_measures_every_requested_variant(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [
        sys.executable,
        HARNESS,
        "--rounds=1",
        "--duration=1",
        "--warmup=0",
        f"--frameworks={','.join(FRAMEWORKS)}",
        f"--variants={','.join(REQUESTED)}",
        f"--venvs={tmp_path / 'venvs'}",
        f"--json={out}",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "added otel, otel-noint" in done.stderr

    document = json.loads(out.read_text())
    assert document["settings"]["baselines_added"] == list(BASELINES)
    results = {(r["framework"], r["variant"]): r for r in document["results"]}
    assert set(results) == {(f, v) for f in FRAMEWORKS for v in (*BASELINES, *REQUESTED)}
    for (framework, variant), result in results.items():
        if framework not in SUPPORTED.get(variant, FRAMEWORKS):
            assert result["status"] == "unsupported", result
            continue
        assert result["status"] == "ok", result
        assert [run["rps"] > 0 for run in result["runs"]] == [True], result
        assert result["otel_config"] is not None, result  # the app reported its OTel set-up
    # the report tells the two OTel set-ups apart
    assert results["starlette", "otel"]["otel_config"]["exclude_receive_span"] is False
    assert results["starlette", "otel-noint"]["otel_config"]["exclude_receive_span"] is True
    assert results["flask", "readme"]["otel_config"]["otel"] is False

    assert "| spanlytics-local |" in done.stdout  # the markdown tables
    assert "| vs same OTel | vs default OTel | CPU µs/req | added µs | ours µs |" in done.stdout
    assert "#### flask: against the peers" in done.stdout
    assert "| spanlytics-local | readme |" in done.stdout

    summary = subprocess.run(
        [sys.executable, HARNESS, f"--from-json={out}", "--summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert summary.returncode == 0, summary.stderr[-4000:]
    for framework in FRAMEWORKS:
        assert f"| {framework} | spanlytics-local |" in summary.stdout
