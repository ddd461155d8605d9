"""Server processes for the request-path harness: start, wait until ready, sample RSS, stop.

Each server runs in its own session (process group), so stopping it reaches gunicorn's worker
and anything a tool forked: SIGTERM to the group first (a graceful stop lets each tool flush
what it queued, so the stub sees what it delivered), SIGKILL to the group after a deadline.
Readiness is polled with a deadline, never assumed after a sleep.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05
RSS_INTERVAL_S = 0.25
# Variables a tool reads on its own: a server inherits none of the shell's (or pytest's, which
# makes Apitally 1.x stay inactive), only what the harness sets.
CLEARED_PREFIXES = ("SPANLYTICS_", "OTEL_", "APITALLY_", "README_", "PYTEST_", "BENCH_")


class ServerFailed(RuntimeError):
    """The server exited or never became ready; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES)}
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT)  # benchmarks.apps; spanlytics only where it is installed
    return env


@dataclass(frozen=True)
class ServerCommand:
    """How to start one server; ``forks_worker``: requests are served by a child process."""

    argv: tuple[str, ...]
    port: int
    forks_worker: bool


def uvicorn_command(python: str, module: str, port: int) -> ServerCommand:
    """uvicorn with one worker: the server is the process itself. The pure-Python loop and
    HTTP parser are named so every variant, in every virtualenv, gets the same ones."""
    argv = (python, "-m", "uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", str(port))
    options = ("--loop", "asyncio", "--http", "h11", "--no-access-log", "--log-level", "warning")
    return ServerCommand((*argv, *options), port, forks_worker=False)


def gunicorn_command(python: str, module: str, port: int) -> ServerCommand:
    """gunicorn, one sync worker (one request at a time, a connection per request)."""
    argv = (python, "-m", "gunicorn", f"{module}:app", "--bind", f"127.0.0.1:{port}")
    options = ("--workers", "1", "--worker-class", "sync", "--graceful-timeout", "5")
    return ServerCommand((*argv, *options, "--no-control-socket", "--log-level", "warning"), port, True)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    command: ServerCommand
    log_path: Path

    @property
    def port(self) -> int:
        return self.command.port

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, path: str = "/healthz", timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not http_ok(self.port, path):
            if self.proc.poll() is not None:
                raise ServerFailed(f"exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerFailed(f"not ready after {timeout_s:.0f}s:\n{self.log_tail()}")
            time.sleep(POLL_INTERVAL_S)

    def worker_pid(self, timeout_s: float = 10.0) -> int:
        """The process serving requests: uvicorn itself, or gunicorn's (only) worker."""
        if not self.command.forks_worker:
            return self.proc.pid
        deadline = time.monotonic() + timeout_s
        while True:
            children = child_pids(self.proc.pid)
            if children:
                return children[0]
            if time.monotonic() > deadline:
                raise ServerFailed("gunicorn has no worker")
            time.sleep(POLL_INTERVAL_S)

    def stop(self) -> None:
        """SIGTERM to the process group, then SIGKILL to it if the deadline passes."""
        if self.proc.poll() is None:
            signal_group(self.proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT_S)
        signal_group(self.proc.pid, signal.SIGKILL)  # stragglers of the group, if any
        if self.proc.poll() is None:
            self.proc.wait(STOP_TIMEOUT_S)


def signal_group(pgid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(pgid, signum)


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def http_ok(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@contextmanager
def running_server(command: ServerCommand, env: Mapping[str, str], log_path: Path) -> Iterator[ServerProcess]:
    """A ready server, stopped (whatever happens in the block) when the block ends."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command.argv,
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches every process
        )
    server = ServerProcess(proc, command, log_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` from /proc, in MB (None once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class RssSampler:
    """Samples a process's RSS every quarter second on a thread, while the load runs."""

    pid: int
    samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()  # the steady state at the end of the run

    def _run(self) -> None:
        while not self._stop.wait(RSS_INTERVAL_S):
            self._sample()

    def _sample(self) -> None:
        value = rss_mb(self.pid)
        if value is not None:
            self.samples.append(round(value, 2))

    def summary(self) -> dict[str, float]:
        """Median and last sample, and the growth from the first sample to the last."""
        if not self.samples:
            return {"rss_median_mb": float("nan"), "rss_last_mb": float("nan"), "rss_growth_mb": 0.0}
        return {
            "rss_median_mb": statistics.median(self.samples),
            "rss_last_mb": self.samples[-1],
            "rss_growth_mb": round(self.samples[-1] - self.samples[0], 2),
        }


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OUR_THREADS = "spanlytics"
"""Thread names of ours start with this (``spanlytics-exporter``, ``spanlytics-readme``, ...)."""


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (gunicorn's master and worker, uvicorn alone)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(child_pids(current))
    return tree


def _cpu_ticks(stat_path: Path) -> int:
    """utime + stime of one /proc stat file (fields 14 and 15; the name in field 2 may hold spaces)."""
    fields = stat_path.read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by a server's processes, and by our threads in them."""

    total_s: float
    ours_s: float

    def __sub__(self, earlier: CpuSample) -> CpuSample:
        return CpuSample(self.total_s - earlier.total_s, self.ours_s - earlier.ours_s)


def cpu_sample(pid: int) -> CpuSample:
    """CPU time of the process tree under ``pid``: all of it, and the threads named ours.

    Threads that ended between two samples are not counted in the threads' figure (ours are
    long-lived); the processes' figure counts them (the kernel folds them into the process).
    """
    total = ours = 0
    for process in process_tree(pid):
        with suppress(OSError, ValueError, IndexError):  # the process may be gone
            total += _cpu_ticks(Path(f"/proc/{process}/stat"))
            for task in Path(f"/proc/{process}/task").iterdir():
                with suppress(OSError, ValueError, IndexError):
                    if (task / "comm").read_text().startswith(OUR_THREADS):
                        ours += _cpu_ticks(task / "stat")
    return CpuSample(total / CLOCK_TICKS, ours / CLOCK_TICKS)


SETTLE_TIMEOUT_S = 5.0
SETTLE_STEP_S = 0.1


def settled_cpu_sample(pid: int, timeout_s: float = SETTLE_TIMEOUT_S) -> CpuSample:
    """A :func:`cpu_sample` once the server has gone idle (less than 2 ms of CPU in 100 ms),
    so that work a load left queued (our background thread's backlog) counts in its window."""
    deadline = time.monotonic() + timeout_s
    previous = cpu_sample(pid)
    while time.monotonic() < deadline:
        time.sleep(SETTLE_STEP_S)
        current = cpu_sample(pid)
        if current.total_s - previous.total_s < 0.002:
            return current
        previous = current
    return previous
