"""The peers' throwaway virtualenvs: each tool spanlytics is compared with gets its own.

A peer must not share the project's venv: its dependencies (another OpenTelemetry
distribution, another ``apitally``) would change what the project's variants run. Each venv is
created with ``python -m venv --without-pip`` and filled by the project venv's own pip
(``pip --python``), which skips bootstrapping a pip per venv. The frameworks, servers and
OpenTelemetry packages are pinned to the versions of the project's venv, so a peer serves the
same app on the same stack and only the tool differs. A venv is reused while its recorded
requirements match; a failed install leaves no record, so the next run starts afresh.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENVS = ROOT / "benchmarks" / ".venvs"
STAMP = "bench-requirements.txt"

WEB = ("starlette", "fastapi", "pydantic", "anyio", "h11", "uvicorn", "flask", "werkzeug", "gunicorn")
OTEL_SDK = ("opentelemetry-api", "opentelemetry-sdk", "opentelemetry-semantic-conventions")
OTEL_INSTRUMENTATION = (
    "opentelemetry-instrumentation",
    "opentelemetry-instrumentation-asgi",
    "opentelemetry-instrumentation-wsgi",
    "opentelemetry-instrumentation-flask",
    "opentelemetry-util-http",
    "opentelemetry-proto",
    "protobuf",
)


@dataclass(frozen=True)
class Peer:
    """A tool under comparison: its pinned requirement, and what it shares with the project."""

    name: str
    requirement: str
    distribution: str
    shared: tuple[str, ...]
    frameworks: tuple[str, ...]

    def requirements(self) -> list[str]:
        pins = [f"{name}=={installed_version(name)}" for name in self.shared]
        if self.name == "apitally1":  # a dependency the project does not have; same release train
            pins.append(
                f"opentelemetry-instrumentation-logging=={installed_version('opentelemetry-instrumentation')}"
            )
        return [self.requirement, *pins]


PEERS = {
    peer.name: peer
    for peer in (
        Peer(
            "apitally1",
            "apitally[fastapi,flask,starlette]==1.0.0",
            "apitally",
            (*WEB, "requests", *OTEL_SDK, *OTEL_INSTRUMENTATION),
            ("starlette", "fastapi", "flask"),
        ),
        Peer(
            "apitally0",
            "apitally[fastapi,flask,starlette]==0.25.1",
            "apitally",
            (*WEB, "requests", "httpx", *OTEL_SDK),
            ("starlette", "fastapi", "flask"),
        ),
        Peer(
            "readme",
            "readme-metrics[flask]==3.4.0",
            "readme-metrics",
            ("flask", "werkzeug", "gunicorn", "requests"),
            ("flask",),
        ),
    )
}


def installed_version(distribution: str) -> str:
    """The version in the project's venv (the one running the harness)."""
    return metadata.version(distribution)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(peer: Peer, venvs: Path) -> Path:
    """The python of ``peer``'s venv under ``venvs``, created or refreshed when needed."""
    venv = venvs / peer.name
    wanted = "\n".join(peer.requirements()) + "\n"
    stamp = venv / STAMP
    if venv_python(venv).exists() and stamp.exists() and stamp.read_text() == wanted:
        return venv_python(venv)
    print(f"creating the {peer.name} venv in {venv}", file=sys.stderr, flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv_python(venv)), "install"]
    quiet = ["--quiet", "--disable-pip-version-check", "--no-input"]
    done = subprocess.run([*pip, *quiet, *peer.requirements()], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install {peer.name}'s requirements:\n{done.stderr[-3000:]}")
    stamp.write_text(wanted)
    return venv_python(venv)


def venv_version(python: Path, distribution: str) -> str:
    """A distribution's version inside another venv."""
    code = f"from importlib import metadata; print(metadata.version({distribution!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"
