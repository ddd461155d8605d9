"""A real PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temporary directory,
on a free 127.0.0.1 port, stopped at the end of the session (Debian's ``postgresql``
package; ``scripts/test.sh`` installs it). As root the server runs as the ``postgres`` user.

Roles: the superuser ``postgres`` (trust, over the unix socket in the temporary directory),
``writer`` and ``stranger`` with passwords (scram-sha-256 over TCP). Each test gets a fresh
database owned by ``writer``; ``stranger`` may connect to it and do nothing else::

    pytest_plugins = ["tests.support.postgres"]  # in the test module: the fixtures

    def test_x(pg_db: PgDatabase) -> None:
        url = pg_db.url  # postgresql://writer:...@127.0.0.1:PORT/t_...

(PYTEST_DONT_REWRITE: the test modules import it before pytest loads it as their plug-in.)
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import free_port

WRITER = "writer"
WRITER_PASSWORD = "Wr1ter-pw-9f3c"  # distinctive: tests search logs and spools for it
STRANGER = "stranger"
STRANGER_PASSWORD = "Str4nger-pw-1b7e"


def pg_bin() -> Path | None:
    """The newest Debian PostgreSQL's binaries (not on PATH), else initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgServer:
    """One server in ``root``; ``stop()`` and ``start()`` for outage tests."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data = root / "data"
        self.socket_dir = root / "sock"
        self.log = root / "server.log"
        binaries = pg_bin()
        if binaries is None:
            pytest.fail(
                "PostgreSQL is not installed: scripts/test.sh installs it (Debian package postgresql)"
            )
        self.bin = binaries
        self.as_root = os.geteuid() == 0

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self.as_root:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True)
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip
        hba = (
            "local all all trust\n"
            f"host all {WRITER},{STRANGER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        (self.data / "pg_hba.conf").write_text(hba)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 64MB\n"
            )
        self.start()
        self.sql(
            f"CREATE ROLE {WRITER} LOGIN PASSWORD '{WRITER_PASSWORD}'",
            f"CREATE ROLE {STRANGER} LOGIN PASSWORD '{STRANGER_PASSWORD}'",
        )

    def start(self) -> None:
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def superuser_dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={self.port} user=postgres dbname={dbname}"

    def sql(self, *statements: str, dbname: str = "postgres") -> list[Any]:
        """Run statements as the superuser; the rows of the last one (if it returns any)."""
        import psycopg

        with psycopg.connect(self.superuser_dsn(dbname), autocommit=True) as conn:
            rows: list[Any] = []
            for statement in statements:
                cur = conn.execute(statement)  # type: ignore[arg-type]
                rows = cur.fetchall() if cur.description else []
            return rows

    def url(self, dbname: str, user: str = WRITER, password: str = WRITER_PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> PgDatabase:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE {name} OWNER {WRITER}")
        return PgDatabase(self, name)

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class PgDatabase:
    server: PgServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def sql(self, *statements: str) -> list[Any]:
        return self.server.sql(*statements, dbname=self.name)

    def count(self, table: str = "requests") -> int:
        return int(self.sql(f"SELECT count(*) FROM {table}")[0][0])


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    root = Path(tempfile.mkdtemp(prefix="spanlytics-pg-"))
    server = PgServer(root, free_port())
    try:
        server.init()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running (never started)
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_db(pg_server: PgServer) -> Iterator[PgDatabase]:
    db = pg_server.create_database()
    yield db
    with contextlib.suppress(Exception):  # down after a failed outage test: the session ends it
        pg_server.drop_database(db.name)
