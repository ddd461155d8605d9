"""Real server processes for tests: uvicorn, gunicorn and werkzeug on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POLL_INTERVAL_S = 0.05


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll_until(predicate, timeout_s: float = 20.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Call ``predicate`` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> int:
        """Graceful shutdown with SIGTERM; returns the exit code (kills on timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"server did not stop on SIGTERM:\n{self.log()}") from None
        return int(self.proc.returncode)


def start_server(
    argv: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    log_dir: Path,
    ready_path: str = "/healthz",
    timeout_s: float = 30.0,
    cwd: Path = ROOT,
) -> ServerProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    log_path = log_dir / f"server-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, port, log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{server.log()}")
        try:
            return requests.get(server.base_url + ready_path, timeout=1).status_code < 500
        except requests.RequestException:
            return False

    try:
        poll_until(ready, timeout_s, f"{argv} to listen on {port}")
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return server


def uvicorn_argv(app: str, port: int, *extra: str) -> list[str]:
    return [str(BIN / "uvicorn"), app, "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *extra]


def gunicorn_argv(app: str, port: int, *extra: str) -> list[str]:
    return [str(BIN / "gunicorn"), app, "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "20", *extra]


def raw_http(port: int, request: bytes, timeout_s: float = 30.0) -> bytes:
    """Send raw request bytes and return every byte the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:  # a server closing with unread request bytes
                chunks.append(b"<connection reset>")
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)
