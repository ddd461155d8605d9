"""Every code block of README.md runs as written (issue 12, item 15).

The blocks are read from README.md when the tests run; nothing here copies them. Each block
is one test, so every runnable block is run:

* ``python`` blocks that build an app (``app = FastAPI()`` / ``Starlette(`` / ``Flask(``) are
  written to ``app.py`` in a temp dir and served by a real server (uvicorn, gunicorn); a
  request goes over a real socket; SIGTERM flushes spanlytics; the SQLite store in that dir
  must hold the request. Other ``python`` blocks run as a script in a subprocess.
* ``bash`` blocks run command by command, as written: ``opentelemetry-instrument ...`` serves
  the FastAPI quickstart's ``app.py``; ``spanlytics report ...`` reads a store the FastAPI
  quickstart app wrote (``--html``: the file it writes), and ``spanlytics dashboard ...``
  serves it (on a free port) and must show its endpoint; a block of ``NAME=value`` lines is
  sourced and must configure spanlytics without a warning.
* ``pip install`` lines are checked without the network: each extra of ``spanlytics[...]``
  must be one the installed spanlytics declares, with its requirements installed here, and
  every other package named must be installed in this venv (so it is a real distribution the
  test extras pulled from PyPI).
* Repository commands (``bash scripts/...``, ``.venv/bin/...``) set up a venv or run the
  suite or the benchmarks: not run here (CI runs ``scripts/test.sh``); the files they name
  and the options they pass must exist.
* ``text`` blocks (synopses, output samples) are not code; a ``yaml`` block is a file of the
  repository shown whole (the Collector configuration), and must equal that file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement

from spanlytics.destinations.local import iter_records
from spanlytics.record import RequestRecord
from tests.support.otlp_receiver import OTLPReceiver, otlp_receiver
from tests.support.servers import (
    BIN,
    ROOT,
    free_port,
    gunicorn_argv,
    poll_until,
    start_server,
    uvicorn_argv,
)

README = ROOT / "README.md"
FENCE = re.compile(r"^```(?P<lang>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LANGUAGES = {"python", "bash", "text", "yaml"}
APP_FRAMEWORK = re.compile(r"^app = (?P<framework>FastAPI|Starlette|Flask)\(", re.MULTILINE)
ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*=\S*$")


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    section: str  # the "## " heading above it
    line: int

    @property
    def id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")
        return f"L{self.line}-{self.lang}-{slug}"

    @property
    def framework(self) -> str | None:
        match = APP_FRAMEWORK.search(self.body) if self.lang == "python" else None
        return match.group("framework") if match else None


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        headings = re.findall(r"^## (.+)$", before, re.MULTILINE)
        blocks.append(
            Block(
                lang=match.group("lang").strip(),
                body=match.group("body"),
                section=headings[-1] if headings else "",
                line=before.count("\n") + 1,
            )
        )
    return blocks


BLOCKS = readme_blocks()


def block_in(section: str, lang: str = "python") -> Block:
    (block,) = [b for b in BLOCKS if b.section == section and b.lang == lang]
    return block


FASTAPI_QUICKSTART = "Quickstart: FastAPI (or Starlette)"


def bash_commands(body: str) -> list[str]:
    """The block's commands: continuation lines joined; blank and comment-only lines dropped."""
    commands = []
    for logical in body.replace("\\\n", " ").splitlines():
        if shlex.split(logical, comments=True):
            commands.append(logical.strip())
    return commands


def command_kind(command: str) -> str | None:
    words = shlex.split(command, comments=True)
    if words[:2] == ["pip", "install"]:
        return "pip"
    if all(ASSIGNMENT.match(word) for word in words):
        return "environment"
    program = next(word for word in words if not ASSIGNMENT.match(word))
    if program == "bash" or program.startswith(".venv/bin/"):
        return "repository"
    if program == "opentelemetry-instrument":
        return "zero-code"
    if program == "spanlytics" and words[words.index(program) + 1] in ("report", "dashboard"):
        return words[words.index(program) + 1]
    return None


# -- what a request to each app block must leave in the store --------------------------------


@dataclass(frozen=True)
class AppCheck:
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    route: str = "/orders/{order_id}"
    consumer: tuple[str, str | None, str | None] | None = None  # id, name, group
    otlp: bool = False  # the block exports to OTLP: point it at the loopback receiver


ACME = ("acme", "Acme Corp", "enterprise")
APP_CHECKS = {
    FASTAPI_QUICKSTART: AppCheck("/orders/42", {"X-API-Key": "key-acme-123"}, consumer=ACME),
    "Quickstart: Flask": AppCheck("/orders/42", {"X-API-Key": "key-acme-123"}, consumer=ACME),
    "Plugging into an existing TracerProvider": AppCheck("/orders/42", otlp=True),
}


def server_argv(framework: str, port: int) -> list[str]:
    if framework == "Flask":
        return gunicorn_argv("app:app", port)
    return uvicorn_argv("app:app", port)


def serve_app_block(
    block: Block, workdir: Path, receiver: tuple[OTLPReceiver, str] | None = None
) -> list[RequestRecord]:
    """Write the block to workdir/app.py, serve it, send its request, SIGTERM, read the store."""
    check = APP_CHECKS[block.section]
    assert block.framework is not None
    (workdir / "app.py").write_text(block.body)
    port = free_port()
    env = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
    if receiver is not None:
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = receiver[1]
    server = start_server(
        server_argv(block.framework, port), port=port, log_dir=workdir, env=env, cwd=workdir
    )
    try:
        response = requests.get(server.base_url + check.path, headers=check.headers, timeout=10)
        assert response.status_code == 200, response.text
    finally:
        assert server.stop() in (0, -15), server.log()
    assert "Traceback" not in server.log(), server.log()
    return list(iter_records(workdir / "spanlytics.db"))  # the default ./spanlytics.db


def check_records(records: list[RequestRecord], check: AppCheck) -> None:
    (record,) = [r for r in records if r.path == check.path]
    assert (record.method, record.route, record.status) == ("GET", check.route, 200)
    if check.consumer is None:
        assert record.consumer is None
    else:
        assert record.consumer is not None
        assert (record.consumer.identifier, record.consumer.name, record.consumer.group) == check.consumer
    for name, value in check.headers.items():
        if "key" in name.lower():  # the API key is masked in the stored headers
            assert dict(record.request_headers)[name.lower()] == "[masked]"
            assert value not in json.dumps([record.url, record.request_headers])


# -- runners, one per kind of block ------------------------------------------------------------


def run_app_block(block: Block, workdir: Path) -> None:
    check = APP_CHECKS[block.section]
    if not check.otlp:
        check_records(serve_app_block(block, workdir), check)
        return
    with otlp_receiver() as (receiver, endpoint):
        records = serve_app_block(block, workdir, (receiver, endpoint))
        spans = poll_until(lambda: [s for s in receiver.spans if "/orders" in s["name"]], 20, "OTLP spans")
    check_records(records, check)
    names = sorted(s["name"] for s in spans)
    # the OTLP side gets what the instrumentor makes without spanlytics: the internal spans too
    assert "GET /orders/{order_id}" in names
    assert any(name.endswith("http send") for name in names), names


def run_script_block(block: Block, workdir: Path) -> None:
    script = workdir / "block.py"
    script.write_text(block.body)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=workdir, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr


def check_pip_line(command: str) -> None:
    words = shlex.split(command, comments=True)[2:]
    packages = [word for word in words if not word.startswith("-")]
    assert packages, command
    spanlytics_extras = set(metadata.metadata("spanlytics").get_all("Provides-Extra") or [])
    spanlytics_requires = [Requirement(r) for r in metadata.requires("spanlytics") or []]
    for package in packages:
        requirement = Requirement(package)
        if requirement.name == "spanlytics":
            for extra in requirement.extras:
                assert extra in spanlytics_extras, f"{command}: spanlytics has no extra [{extra}]"
                needed = [
                    r
                    for r in spanlytics_requires
                    if r.marker is not None and r.marker.evaluate({"extra": extra})
                ]
                assert needed, f"[{extra}] installs nothing"
                for dependency in needed:
                    installed = metadata.version(dependency.name)
                    assert dependency.specifier.contains(installed, prereleases=True), (dependency, installed)
        else:
            metadata.version(requirement.name)  # raises PackageNotFoundError for a wrong name


def check_repository_command(command: str) -> None:
    words = shlex.split(command, comments=True)
    assignments = [word for word in words if ASSIGNMENT.match(word)]
    words = words[len(assignments) :]
    program, arguments = words[0], words[1:]
    if program.startswith(".venv/bin/"):
        assert (BIN / program.removeprefix(".venv/bin/")).exists(), command
    files = [ROOT / word for word in arguments if "/" in word and not word.startswith("-")]
    assert files and all(path.exists() for path in files), command
    script = files[0]
    if script.is_file() and script.suffix == ".py":
        source = script.read_text()
        for option in (word for word in arguments if word.startswith("--")):
            assert f'"{option}"' in source, f"{command}: {script.name} has no {option}"
    for assignment in assignments:  # a variable the README sets must be one the script reads
        variable = assignment.partition("=")[0]
        assert variable in script.read_text(), f"{command}: {script.name} does not read {variable}"


def environment_from(commands: list[str]) -> dict[str, str]:
    """Source the assignments with bash (as a shell would) and read what they set."""
    script = (
        "set -a\n"
        + "\n".join(commands)
        + '\nexec "$0" -c "import json, os; print(json.dumps(dict(os.environ)))"'
    )
    done = subprocess.run(
        ["bash", "-c", script, sys.executable], capture_output=True, text=True, env={}, check=True
    )
    environ: dict[str, str] = json.loads(done.stdout)
    assigned = {shlex.split(c, comments=True)[0].split("=", 1)[0] for c in commands}
    return {name: environ[name] for name in assigned}


def configuration_table() -> dict[str, str]:
    """README's Configuration table: variable -> keyword."""
    rows = re.findall(r"^\| `(\w+)` \| `(SPANLYTICS_\w+)` \|", README.read_text(), re.MULTILINE)
    return {variable: keyword for keyword, variable in rows}


def check_environment(commands: list[str], caplog: pytest.LogCaptureFixture) -> None:
    from spanlytics import Settings

    environ = environment_from(commands)
    assert environ and all(name.startswith("SPANLYTICS_") for name in environ), environ
    keywords = configuration_table()
    with caplog.at_level("WARNING", logger="spanlytics"):
        settings = Settings.resolve(env=environ)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    for variable in environ:
        keyword = keywords[variable]  # documented in the Configuration table
        assert hasattr(settings, keyword), variable
    assert settings.destinations == tuple(environ["SPANLYTICS_DESTINATIONS"].split(","))


def quickstart_store(workdir: Path) -> None:
    """As the quickstart says: run the FastAPI app, send traffic, stop it (once per block)."""
    if not (workdir / "spanlytics.db").exists():
        check_records(serve_app_block(block_in(FASTAPI_QUICKSTART), workdir), APP_CHECKS[FASTAPI_QUICKSTART])


def run_report_commands(commands: list[str], workdir: Path) -> None:
    """The quickstart app's store, then the report."""
    check = APP_CHECKS[FASTAPI_QUICKSTART]
    quickstart_store(workdir)
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command], cwd=workdir, env=shell_env(), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        if "--html" in command:  # the file it names: one page with the endpoint and consumer
            html = (workdir / shlex.split(command)[shlex.split(command).index("--html") + 1]).read_text()
            assert html.startswith("<!doctype html>") and check.route in html and "acme" in html
        elif "--json" in command:
            data = json.loads(done.stdout)
            (endpoint,) = data["endpoints"]
            assert (endpoint["route"], endpoint["count"]) == (check.route, 1)
            assert [c["consumer_id"] for c in data["consumers"]] == ["acme"]
        else:
            assert check.route in done.stdout and "acme" in done.stdout, done.stdout


def run_dashboard_command(command: str, workdir: Path) -> None:
    """The command as written over the quickstart app's store, on a free port (the one option
    added: the README's default, 8050, may be taken), and its overview over a socket."""
    quickstart_store(workdir)
    port = free_port()
    server = start_server(
        ["bash", "-c", f"{command} --port {port}"],
        port=port,
        log_dir=workdir,
        env=shell_env(),
        cwd=workdir,
        ready_path="/static/dashboard.css",
    )
    try:
        page = requests.get(server.base_url + "/?range=1h", timeout=30)
    finally:
        assert server.stop() in (0, -15), server.log()
    assert page.status_code == 200 and APP_CHECKS[FASTAPI_QUICKSTART].route in page.text
    assert "acme" in page.text and "Traceback" not in server.log()


def run_zero_code_command(command: str, workdir: Path) -> None:
    """The command as written, from a dir holding the FastAPI quickstart's app.py."""
    fastapi_block = block_in(FASTAPI_QUICKSTART)
    (workdir / "app.py").write_text(fastapi_block.body)
    check = APP_CHECKS[FASTAPI_QUICKSTART]
    port = free_port()
    # uvicorn's port is the one thing the command leaves to its default (8000)
    env = {**shell_env(), "UVICORN_PORT": str(port)}
    server = start_server(["bash", "-c", command], port=port, log_dir=workdir, env=env, cwd=workdir)
    try:
        response = requests.get(server.base_url + check.path, headers=check.headers, timeout=10)
        assert response.status_code == 200, response.text
    finally:
        assert server.stop() in (0, -15), server.log()
    log = server.log()
    assert "spanlytics records nothing" not in log and "Failed to auto initialize" not in log, log
    check_records(list(iter_records(workdir / "spanlytics.db")), check)


def shell_env() -> dict[str, str]:
    """The user's shell: this venv's commands first on PATH, no spanlytics settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPANLYTICS_", "OTEL_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_bash_block(block: Block, workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    commands = bash_commands(block.body)
    kinds = [command_kind(c) for c in commands]
    assert None not in kinds, [c for c, k in zip(commands, kinds, strict=True) if k is None]
    by_kind: dict[str | None, list[str]] = {}
    for command, kind in zip(commands, kinds, strict=True):
        by_kind.setdefault(kind, []).append(command)
    for command in by_kind.pop("pip", []):
        check_pip_line(command)
    for command in by_kind.pop("repository", []):
        check_repository_command(command)
    if "environment" in by_kind:
        check_environment(by_kind.pop("environment"), caplog)
    if "report" in by_kind:
        run_report_commands(by_kind.pop("report"), workdir)
    for command in by_kind.pop("dashboard", []):
        run_dashboard_command(command, workdir)
    for command in by_kind.pop("zero-code", []):
        run_zero_code_command(command, workdir)
    assert not by_kind, by_kind


RUNNABLE = [b for b in BLOCKS if b.lang in ("python", "bash")]


def test_every_block_has_a_known_language_and_a_way_to_run() -> None:
    assert len(BLOCKS) >= 10  # the parser found the README's blocks
    for block in BLOCKS:
        assert block.lang in LANGUAGES, f"{block.id}: fence language {block.lang!r}"
        if block.lang == "bash":
            for command in bash_commands(block.body):
                assert command_kind(command) is not None, f"{block.id}: no runner for {command!r}"
        if block.framework is not None:
            assert block.section in APP_CHECKS, f"{block.id}: no request defined for this app"
    apps = {b.section for b in BLOCKS if b.framework is not None}
    assert apps == set(APP_CHECKS)  # each expected app block is still there, and served below
    assert {b.framework for b in BLOCKS} >= {"FastAPI", "Flask"}


def test_every_spanlytics_name_the_readme_calls_is_public() -> None:
    import spanlytics

    called = set(re.findall(r"\bspanlytics\.([A-Za-z_]\w*)\(", README.read_text()))
    assert {"configure", "instrument_app", "SpanlyticsSampler"} <= called
    assert sorted(name for name in called if not hasattr(spanlytics, name)) == []
    assert called <= set(spanlytics.__all__)


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_block_runs_as_written(block: Block, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if block.lang == "bash":
        run_bash_block(block, tmp_path, caplog)
    elif block.framework is not None:
        run_app_block(block, tmp_path)
    else:
        run_script_block(block, tmp_path)


def test_yaml_blocks_are_the_files_they_show() -> None:
    """A configuration in the README is the one the repository ships, word for word."""
    shown = {
        "At scale through the Collector": ROOT / "examples" / "otel_collector" / "otelcol.yaml",
    }
    blocks = [b for b in BLOCKS if b.lang == "yaml"]
    assert {b.section for b in blocks} == set(shown)
    for block in blocks:
        assert block.body == shown[block.section].read_text(), block.id
