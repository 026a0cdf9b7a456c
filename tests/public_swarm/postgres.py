"""A throwaway PostgreSQL 15 cluster for the ledger's tests: initdb into a temporary folder, start
it on a free port on 127.0.0.1 (its unix socket in the same folder, nowhere else), hand out one
fresh database per test, and stop and remove the cluster at the end of the session, failures
included. As root the server runs as the `postgres` user (initdb refuses root).

Skipped, with the reason, only when the binaries are absent and this is not root (as root,
scripts/setup.sh installs Debian's postgresql-15; CI runs as root, so there it must run).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

BIN = Path(os.environ.get("HEARTH_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class Cluster:
    port: int
    folder: Path
    _names: Iterator[int]

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"ledger_{next(self._names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str], log: Path) -> None:
    with log.open("ab") as out:
        r = subprocess.run(_as_server_user(cmd), stdout=out, stderr=subprocess.STDOUT, timeout=120)
    if r.returncode:
        server_log = log.with_name("server.log")
        tail = server_log.read_text()[-2000:] if server_log.exists() else ""
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{log.read_text()[-2000:]}\n{tail}")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """One PostgreSQL 15 server for the session (starting one costs about a second)."""
    if not (BIN / "initdb").exists():
        if os.geteuid() != 0:
            pytest.skip(f"PostgreSQL 15 is not installed ({BIN}) and this is not root: "
                        "run scripts/setup.sh as root, or apt-get install postgresql-15")
        pytest.fail(f"PostgreSQL 15 is not installed ({BIN}): scripts/setup.sh installs it as root")
    folder = Path(tempfile.mkdtemp(prefix="hearth-pg-"))
    data, log, server_log = folder / "data", folder / "commands.log", folder / "server.log"
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(folder, pg.pw_uid, pg.pw_gid)
    port = free_port()
    started = False
    try:
        _run([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
              "--no-sync"], log)
        # fsync off: the tests kill clients, never this server, so durability is not what is tested.
        opts = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=200 -c shared_buffers=32MB")
        started = True
        _run([str(BIN / "pg_ctl"), "-D", str(data), "-l", str(server_log), "-o", opts, "-w", "-t", "60", "start"], log)
        yield Cluster(port, folder, itertools.count())
    finally:
        if started:
            try:
                _run([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"], log)
            except RuntimeError as exc:
                print(exc)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """A fresh database on the session's cluster."""
    return postgres_cluster.new_database()

