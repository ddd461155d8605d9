"""Request-path benchmark: spanlytics against plain OpenTelemetry and its peers, as real servers.

Every variant (``--variants``; see ``harness_variants.py``) of every framework runs as its own
server process: Starlette and FastAPI under uvicorn (one worker, the asyncio loop and h11),
Flask under gunicorn (``-w 1``, sync worker). wrk drives it on loopback (a 1 KB JSON POST with
a password to mask, or ``--endpoint get``) after a short warm-up, while a thread samples the
serving process's RSS. Each round runs every variant once, in reverse order on odd rounds
(A B C, C B A), so drift of the machine hits every variant alike; the tables show medians over
rounds. Tools that ship logs send them to a loopback stub in its own process
(``ingest_stub.py``); a graceful stop after each run lets them flush, and "sent KB" is what
reached the stub. Peers run in their own throwaway venvs (``harness_peers.py``).

    .venv/bin/python benchmarks/harness.py --rounds 3 --duration 10
    .venv/bin/python benchmarks/harness.py --frameworks flask --variants bare,otel,spanlytics-local,readme
    .venv/bin/python benchmarks/harness.py --endpoint get --json results.json
    .venv/bin/python benchmarks/harness.py --from-json results.json --summary

Each variant is compared with the OpenTelemetry-alone variant of the same OTel set-up, which
its server reports (``BENCH_CONFIG_OUT``, see ``apps/common.py``); the harness adds those
baselines when spanlytics variants are requested. The markdown goes to stdout (``--summary``:
one compact table for the project README), progress to stderr, every raw number to
``--json``, which ``--from-json`` renders again without running anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from harness_peers import DEFAULT_VENVS, PEERS, ensure_venv, venv_python, venv_version
from harness_servers import (
    ROOT,
    RssSampler,
    ServerCommand,
    ServerFailed,
    clean_environment,
    free_port,
    gunicorn_command,
    running_server,
    settled_cpu_sample,
    uvicorn_command,
)
from harness_tables import render, reported_config, summarize
from harness_variants import (
    ASGI,
    CONFIG_FILE,
    FRAMEWORKS,
    VARIANTS,
    Variant,
    app_module,
    server_environment,
    with_baselines,
)
from harness_wrk import PATHS, ensure_wrk, run_wrk, write_script, wrk_version

Result = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    rounds: int
    duration: int
    warmup: int
    endpoint: str
    threads: int
    connections: int
    frameworks: tuple[str, ...]
    variants: tuple[str, ...]
    baselines_added: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        lists = {k: list(v) for k, v in self.__dict__.items() if isinstance(v, tuple)}
        return {**self.__dict__, **lists}


class Stub:
    """The harness's handle on the ingestion stub process."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/_stub/reset", b"", method="POST")
        urllib.request.urlopen(request, timeout=5).close()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_stub/stats", timeout=5) as response:
            stats: dict[str, Any] = json.load(response)
        return stats


@contextmanager
def ingest_stub(workdir: Path) -> Iterator[Stub]:
    port = free_port()
    argv = (sys.executable, str(ROOT / "benchmarks" / "ingest_stub.py"), "--port", str(port))
    with running_server(ServerCommand(argv, port, False), clean_environment({}), workdir / "stub.log"):
        yield Stub(port)


@dataclass
class Bench:
    """One harness run: the load, the stub and the interpreters, shared by every measurement."""

    settings: Settings
    wrk: str
    script: Path
    stub: Stub
    workdir: Path
    pythons: dict[str, str]
    peer_failures: dict[str, str]

    def run_framework(self, framework: str) -> list[Result]:
        """Every requested variant on ``framework``, interleaved over rounds."""
        variants = [VARIANTS[name] for name in self.settings.variants]
        results = {v.name: planned(framework, v, self.peer_failures) for v in variants}
        runnable = [v for v in variants if results[v.name]["status"] == "pending"]
        for round_no in range(self.settings.rounds):
            for variant in runnable if round_no % 2 == 0 else runnable[::-1]:
                result = results[variant.name]
                if result["status"] == "pending":
                    self.measure_into(result, variant, framework, round_no)
        for result in results.values():
            if result["status"] == "pending":
                result["status"] = "ok"
                result["summary"] = summarize(result["runs"])
                result["otel_config"] = reported_config(result["runs"])
        return list(results.values())

    def measure_into(self, result: Result, variant: Variant, framework: str, round_no: int) -> None:
        """One measured run appended to ``result``; a variant that fails is not run again."""
        try:
            run = self.measure(variant, framework, round_no)
        except (ServerFailed, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            result["status"], result["reason"] = "failed", str(exc).splitlines()[0]
            print(f"{framework} {variant.name} FAILED: {exc}", file=sys.stderr, flush=True)
            return
        result["runs"].append(run)
        print(
            f"{framework:<9} round {round_no + 1}/{self.settings.rounds} {variant.name:<19} "
            f"{run['rps']:8.0f} req/s  p99 {run['p99_ms']:7.2f} ms  rss {run['rss_median_mb']:6.1f} MB  "
            f"sent {run['sent_bytes'] / 1024:8.0f} KB",
            file=sys.stderr,
            flush=True,
        )

    def measure(self, variant: Variant, framework: str, round_no: int) -> Result:
        """Start the server, warm it up, measure while sampling RSS, stop it gracefully, then
        ask the stub what arrived (a tool flushes at shutdown, so not before)."""
        run_dir = self.workdir / f"{framework}-{variant.name}-{round_no}"
        run_dir.mkdir()
        python = self.pythons[variant.peer] if variant.peer else sys.executable
        port = free_port()
        build = uvicorn_command if framework in ASGI else gunicorn_command
        command = build(python, app_module(framework), port)
        env = clean_environment(server_environment(variant, run_dir, self.stub.url))
        url = f"http://127.0.0.1:{port}{PATHS[self.settings.endpoint]}"
        s = self.settings
        self.stub.reset()
        with running_server(command, env, run_dir / "server.log") as server:
            if s.warmup > 0:
                run_wrk(self.wrk, url, self.script, s.warmup, s.threads, s.connections)
            before = settled_cpu_sample(server.proc.pid)
            with RssSampler(server.worker_pid()) as rss:
                load = run_wrk(self.wrk, url, self.script, s.duration, s.threads, s.connections)
            used = settled_cpu_sample(server.proc.pid) - before
        sent = self.stub.stats()
        config = run_dir / CONFIG_FILE
        otel_config = json.loads(config.read_text()) if config.exists() else None
        shutil.rmtree(run_dir, ignore_errors=True)
        return {
            "round": round_no + 1,
            **load.__dict__,
            # every process of the server, and our threads in them; idle time before and
            # after the load is a few ms, spread over tens of thousands of requests
            "cpu_us_per_request": used.total_s * 1e6 / max(load.requests, 1),
            "ours_us_per_request": used.ours_s * 1e6 / max(load.requests, 1),
            "rss_samples_mb": rss.samples,
            **rss.summary(),
            "sent_requests": sent["requests"],
            "sent_bytes": sent["bytes"],
            "sent_paths": sent["paths"],
            "otel_config": otel_config,  # what the server reported running (apps/common.py)
        }


def planned(framework: str, variant: Variant, peer_failures: dict[str, str]) -> Result:
    """A result before any run: pending, or why the variant will not run here."""
    status, reason = "pending", None
    if framework not in variant.frameworks:
        status, reason = "unsupported", f"{', '.join(variant.frameworks)} only"
    elif (why := variant.unavailable()) is not None:
        status, reason = "skipped", why
    elif variant.peer in peer_failures:
        status, reason = "failed", peer_failures[variant.peer]
    return {
        "framework": framework,
        "variant": variant.name,
        "peer": variant.peer,
        "status": status,
        "reason": reason,
        "otel_config": None,
        "runs": [],
    }


def prepare_peers(settings: Settings, venvs: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The python of every peer a requested variant runs on a requested framework, and why
    each peer whose venv could not be made is missing (its variants then fail, the rest run)."""
    needed = {
        v.peer
        for v in (VARIANTS[name] for name in settings.variants)
        if v.peer and set(v.frameworks) & set(settings.frameworks)
    }
    pythons, failures = {}, {}
    for name in sorted(needed):
        try:
            pythons[name] = str(ensure_venv(PEERS[name], venvs))
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            print(f"{name}: {exc}", file=sys.stderr, flush=True)
            failures[name] = f"no venv for {name} ({str(exc).splitlines()[0]})"
    return pythons, failures


def commands(settings: Settings) -> dict[str, str]:
    """The command lines behind the figures, for the JSON record."""
    asgi = uvicorn_command("python", app_module("starlette"), 8000).argv
    wsgi = gunicorn_command("python", app_module("flask"), 8000).argv
    wrk = (
        f"wrk -t{settings.threads} -c{settings.connections} -d{settings.duration}s --timeout 10s --latency "
        f"-s {settings.endpoint}.lua http://127.0.0.1:8000{PATHS[settings.endpoint]}"
    )
    return {"asgi": " ".join(asgi), "wsgi": " ".join(wsgi), "wrk": wrk}


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def peer_version(peer: str, venvs: Path) -> str:
    python = venv_python(venvs / peer)
    if python.exists():
        return venv_version(python, PEERS[peer].distribution)
    return PEERS[peer].requirement.rsplit("==", 1)[1] + " (pinned; venv not created)"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "CPU unknown"


def describe_environment(wrk: str, venvs: Path) -> dict[str, Any]:
    """What the figures depend on: the machine and every version in play."""
    packages = [
        "opentelemetry-sdk",
        "opentelemetry-instrumentation",
        "spanlytics",
        "fastapi",
        "starlette",
        "flask",
        "uvicorn",
        "gunicorn",
    ]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "machine": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            **{name: version(name) for name in packages},
            "apitally 1.x": peer_version("apitally1", venvs),
            "apitally 0.x": peer_version("apitally0", venvs),
            "readme-metrics": peer_version("readme", venvs),
            "wrk": wrk_version(wrk),
        },
    }


def names(raw: str, known: Any, what: str, parser: argparse.ArgumentParser) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    unknown = [n for n in chosen if n not in known]
    if unknown or not chosen:
        parser.error(f"unknown {what}: {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    return chosen


@dataclass(frozen=True)
class Options:
    settings: Settings
    venvs: Path
    json: Path | None
    summary: bool
    from_json: Path | None


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="variants: " + "; ".join(f"{v.name}: {v.summary}" for v in VARIANTS.values()),
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of measured load per run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before measuring (0: none)")
    parser.add_argument("--endpoint", choices=sorted(PATHS), default="post")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--venvs", type=Path, default=DEFAULT_VENVS, help="where the peers' venvs live")
    parser.add_argument("--json", type=Path, help="write every raw number here")
    parser.add_argument(
        "--summary", action="store_true", help="print one compact table for the project README instead"
    )
    parser.add_argument(
        "--from-json", type=Path, metavar="FILE", help="render the tables of a --json file; run nothing"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.warmup < 0:
        parser.error("--rounds and --duration must be at least 1, --warmup at least 0")
    frameworks = names(args.frameworks, FRAMEWORKS, "framework", parser)
    variants, baselines_added = with_baselines(names(args.variants, VARIANTS, "variant", parser), frameworks)
    settings = Settings(
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup,
        endpoint=args.endpoint,
        threads=args.threads,
        connections=args.connections,
        frameworks=frameworks,
        variants=variants,
        baselines_added=baselines_added,
    )
    return Options(settings, args.venvs.resolve(), args.json, args.summary, args.from_json)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    if options.from_json is not None:
        print(render(json.loads(options.from_json.read_text()), options.summary), end="", flush=True)
        return
    settings, venvs = options.settings, options.venvs
    if settings.baselines_added:
        print(
            f"added {', '.join(settings.baselines_added)}: the same-configuration OpenTelemetry "
            "baselines of the spanlytics variants",
            file=sys.stderr,
            flush=True,
        )
    wrk = ensure_wrk()
    pythons, peer_failures = prepare_peers(settings, venvs)  # before measuring: installs add no noise
    environment = describe_environment(wrk, venvs)
    with tempfile.TemporaryDirectory(prefix="spanlytics-bench-") as tmp:
        workdir = Path(tmp)
        script = write_script(workdir, settings.endpoint)
        with ingest_stub(workdir) as stub:
            bench = Bench(settings, wrk, script, stub, workdir, pythons, peer_failures)
            results = [r for framework in settings.frameworks for r in bench.run_framework(framework)]
    document = {
        "environment": environment,
        "settings": settings.as_dict(),
        "commands": commands(settings),
        "results": results,
    }
    print(render(document, options.summary), end="", flush=True)
    if options.json is not None:
        options.json.write_text(json.dumps(document, indent=2) + "\n")
    if any(r["status"] == "failed" for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
