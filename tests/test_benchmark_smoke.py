"""benchmarks/harness.py, CI-sized: it runs end to end, so the harness cannot rot unnoticed.

One round of one second on Starlette (uvicorn) and Flask (gunicorn), the baselines and
spanlytics' full local logging, plus one peer in a venv created from scratch here (readme,
the quickest to install), so the peer-venv path is exercised on every run. Nothing is timed
against a threshold: every variant that runs must have served requests, that is all. wrk
comes from apt-get when missing (CI runs as root).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("starlette", "flask")
VARIANTS = ("bare", "otel", "spanlytics-local", "readme")
PEER_FRAMEWORKS = {"readme": ("flask",)}


def test_harness_measures_every_requested_variant(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [
        sys.executable,
        str(ROOT / "benchmarks" / "harness.py"),
        "--rounds=1",
        "--duration=1",
        "--warmup=0",
        f"--frameworks={','.join(FRAMEWORKS)}",
        f"--variants={','.join(VARIANTS)}",
        f"--venvs={tmp_path / 'venvs'}",
        f"--json={out}",
    ]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-4000:]

    results = {(r["framework"], r["variant"]): r for r in json.loads(out.read_text())["results"]}
    assert set(results) == {(f, v) for f in FRAMEWORKS for v in VARIANTS}
    for (framework, variant), result in results.items():
        if framework not in PEER_FRAMEWORKS.get(variant, FRAMEWORKS):
            assert result["status"] == "unsupported", result
            continue
        assert result["status"] == "ok", result
        assert [run["rps"] > 0 for run in result["runs"]] == [True], result
    assert "| spanlytics-local |" in done.stdout  # the markdown table
