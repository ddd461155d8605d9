"""What users install: the sdist and wheel built from this checkout, in fresh venvs.

* The sdist ships the whole tracked tree (tests with their support files included) but CI
  plumbing, and the wheel the package with its LICENSE and the demo, nothing of tests/.
* The published metadata: extras for the frameworks, no test or bench extras (those are PEP 735
  dependency groups), no pinned OpenTelemetry minor release.
* A fresh venv with the newest OpenTelemetry on PyPI plus ``spanlytics[fastapi]`` passes
  ``pip check`` and keeps every OpenTelemetry package at its version; ``spanlytics demo``
  then runs from the installed wheel, outside the checkout.
"""

from __future__ import annotations

import email.parser
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.servers import ROOT

#: Tracked files the sdist leaves out on purpose: CI plumbing only.
NOT_IN_SDIST = {".ci/run", ".gitignore"}
#: What a user on the newest OpenTelemetry has before adding spanlytics[fastapi].
NEWEST_OTEL = ["opentelemetry-sdk", "opentelemetry-instrumentation-fastapi"]


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    """The sdist, and the wheel built from that sdist (as ``python -m build`` does)."""
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)]
    done = subprocess.run(build, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = out.glob("spanlytics-*.tar.gz")
    (wheel,) = out.glob("spanlytics-*.whl")
    return Dists(sdist, wheel)


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, **kwargs)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class FreshVenv:
    python: Path
    otel_before: dict[str, str]
    otel_after_fastapi: dict[str, str]
    pip_check_after_fastapi: subprocess.CompletedProcess[str]
    demo_without_extra: subprocess.CompletedProcess[str]
    otel_after_demo: dict[str, str]


def otel_versions(python: Path) -> dict[str, str]:
    listed = run([sys.executable, "-m", "pip", "--python", str(python), "list", "--format", "json"])
    assert listed.returncode == 0, listed.stderr
    return {
        p["name"].lower(): p["version"] for p in json.loads(listed.stdout) if "opentelemetry" in p["name"]
    }


@pytest.fixture(scope="module")
def fresh_venv(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[FreshVenv]:
    """A venv with the newest OpenTelemetry, then the wheel with [fastapi], then with [demo].

    The venv has no pip of its own: this venv's pip installs into it (``pip --python``), from
    pip's cache where it can; OpenTelemetry installs while the dists are built.
    """
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    install = [*pip, "install", "--quiet", "--disable-pip-version-check"]
    newest_otel = subprocess.Popen(
        [*install, *NEWEST_OTEL], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    dists: Dists = request.getfixturevalue("dists")
    _, errors = newest_otel.communicate(timeout=180)
    assert newest_otel.returncode == 0, errors[-3000:]
    before = otel_versions(python)
    done = run([*install, f"{dists.wheel}[fastapi]"])
    assert done.returncode == 0, done.stderr[-3000:]
    after_fastapi = otel_versions(python)
    pip_check = run([*pip, "check"])
    demo_without_extra = run([str(venv / "bin" / "spanlytics"), "demo"], cwd=venv)
    done = run([*install, f"{dists.wheel}[demo]"])
    assert done.returncode == 0, done.stderr[-3000:]
    yield FreshVenv(python, before, after_fastapi, pip_check, demo_without_extra, otel_versions(python))


def test_newest_opentelemetry_plus_spanlytics_passes_pip_check(fresh_venv: FreshVenv) -> None:
    check = fresh_venv.pip_check_after_fastapi
    assert check.returncode == 0, f"pip check failed next to the newest OpenTelemetry:\n{check.stdout}"


def test_spanlytics_downgrades_no_opentelemetry_package(fresh_venv: FreshVenv) -> None:
    before = fresh_venv.otel_before
    assert "opentelemetry-sdk" in before and "opentelemetry-instrumentation-fastapi" in before
    for after in (fresh_venv.otel_after_fastapi, fresh_venv.otel_after_demo):
        downgraded = {
            name: f"{version} -> {after.get(name)}"
            for name, version in before.items()
            if name not in after or Version(after[name]) < Version(version)
        }
        assert not downgraded, f"installing spanlytics changed the user's OpenTelemetry: {downgraded}"


def test_demo_without_its_extra_says_what_to_install(fresh_venv: FreshVenv) -> None:
    demo = fresh_venv.demo_without_extra
    assert demo.returncode == 1
    assert "pip install 'spanlytics[demo]'" in demo.stderr and "Traceback" not in demo.stderr


def test_demo_runs_from_the_installed_wheel_outside_the_checkout(
    fresh_venv: FreshVenv, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SPANLYTICS_"))}
    python, spanlytics = str(fresh_venv.python), str(fresh_venv.python.parent / "spanlytics")
    where = run([python, "-c", "import spanlytics; print(spanlytics.__file__)"], cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).is_relative_to(fresh_venv.python.parents[1]), where.stdout
    demo = run([spanlytics, "demo", "--db", "demo.db", "--rounds", "1"], cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "Sent " in demo.stdout and "/items/{item_id}" in demo.stdout and "acme" in demo.stdout
    report = run([spanlytics, "report", "--db", "demo.db", "--json"], cwd=tmp_path, env=env)
    assert json.loads(report.stdout)["total"] == int(demo.stdout.split("Sent ", 1)[1].split()[0])


def test_the_sdist_ships_the_tracked_tree(dists: Dists) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    # what is or would be committed (new files too), less files deleted in the work tree
    expected = {name for name in tracked if name and (ROOT / name).is_file()} - NOT_IN_SDIST
    with tarfile.open(dists.sdist) as sdist:
        shipped = {member.name.split("/", 1)[1] for member in sdist.getmembers() if member.isfile()}
    generated = {"PKG-INFO", "setup.cfg"} | {n for n in shipped if n.startswith("src/spanlytics.egg-info/")}
    assert shipped - generated == expected
    assert {"tests/conftest.py", "tests/support/servers.py", "LICENSE"} <= shipped


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


def test_the_wheel_carries_the_license_and_the_demo_and_no_tests(dists: Dists) -> None:
    with zipfile.ZipFile(dists.wheel) as archive:
        names = set(archive.namelist())
        license_files = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert license_files, sorted(names)
        text = archive.read(license_files[0]).decode()
    assert text.lstrip().startswith("Apache License") and "END OF TERMS AND CONDITIONS" in text
    assert {"spanlytics/demo/service/main.py", "spanlytics/demo/data.py", "spanlytics/py.typed"} <= names
    dashboard = {
        "templates/base.html",
        "templates/request.html",
        "static/dashboard.css",
        "static/dashboard.js",
    }
    assert {f"spanlytics/dashboard/{name}" for name in dashboard} <= names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]


def test_the_published_metadata(dists: Dists) -> None:
    meta = wheel_metadata(dists.wheel)
    assert meta["License-Expression"] == "Apache-2.0"
    classifiers = set(meta.get_all("Classifier") or [])
    tested = {f"Programming Language :: Python :: 3.{minor}" for minor in (10, 11)}  # scripts/test.sh
    assert {c for c in classifiers if c.startswith("Programming Language :: Python :: 3.")} == tested
    assert any(c.startswith("Development Status ::") for c in classifiers)
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(urls)
    extras = {"fastapi", "flask", "starlette", "demo", "fast", "postgres", "dashboard", "apitally"}
    assert set(meta.get_all("Provides-Extra") or []) == extras
    requirements = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    core = {r.name for r in requirements if r.marker is None}
    assert core == {
        "opentelemetry-api",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation",
        "opentelemetry-instrumentation-asgi",
        "requests",
    }
    for requirement in requirements:
        if requirement.name.startswith("opentelemetry-"):
            # a floor and a major-version ceiling, never a pinned minor release
            assert {spec.operator for spec in requirement.specifier} == {">=", "<"}, requirement
