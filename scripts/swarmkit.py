"""Processes for the public-swarm benchmark: a throwaway PostgreSQL 15 (the start-up lines of
tests/public_swarm/postgres.py, whose fixture only pytest can call) and `hearth serve` on a worker's
HEARTH_HOME."""

from __future__ import annotations

import importlib
import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hearth.identity import NodeIdentity  # noqa: E402
from tests.conftest import HEARTH, free_port, hearth_env  # noqa: E402
from tests.public_swarm.postgres import BIN, Cluster, _run  # noqa: E402
from tests.public_swarm.worker_proc import stop  # noqa: E402


def identity(seed: int) -> NodeIdentity:
    """A node identity from a one-byte seed (as the dispatcher's tests make them)."""
    return NodeIdentity(SigningKey(bytes([seed]) * 32))


def scripted_worker(seed: int, slots: int) -> Any:
    """tests/public_swarm/dispatch_live.py's ScriptedWorker (real link, session and signed receipts)
    that streams its one token at once. Imported at run time: that test module is not typed strictly."""
    live = importlib.import_module("tests.public_swarm.dispatch_live")
    return live.ScriptedWorker(identity(seed), slow_s=0.0, max_jobs=slots)


@contextmanager
def throwaway_postgres() -> Iterator[Cluster]:
    """A PostgreSQL 15 cluster on 127.0.0.1 in a temporary folder, removed at the end."""
    if not (BIN / "initdb").exists():
        raise SystemExit(f"PostgreSQL 15 is not installed ({BIN}): run scripts/setup.sh as root")
    folder = Path(tempfile.mkdtemp(prefix="hearth-pg-"))
    data, log = folder / "data", folder / "commands.log"
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(folder, pg.pw_uid, pg.pw_gid)
    port = free_port()
    try:
        _run([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"], log)
        opts = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=200 -c shared_buffers=32MB")
        _run([str(BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-o", opts, "-w", "-t", "60",
              "start"], log)
        yield Cluster(port, folder, itertools.count())
    finally:
        if (data / "postmaster.pid").exists():
            _run([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop"], log)
        shutil.rmtree(folder, ignore_errors=True)


def env_of(home: Path, models: Path, threads: int) -> dict[str, str]:
    """The environment tests give a worker (n_ctx 2048), with `threads` decode threads."""
    env = hearth_env(home, HEARTH_MODELS_DIR=str(models))
    env["HEARTH_N_THREADS"] = str(threads)
    return env


@contextmanager
def contribute(home: Path, url: str, model: str, models: Path, threads: int) -> Iterator[subprocess.Popen[bytes]]:
    """`hearth contribute --coordinator URL --model MODEL --radius machine` on `home`."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "contribute.log").open("ab") as log:
        proc = subprocess.Popen([*HEARTH, "contribute", "--coordinator", url, "--model", model, "--radius", "machine"],
                                env=env_of(home, models, threads), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        yield proc
    finally:
        stop(proc)


@contextmanager
def hearth_serve(home: Path, models: Path, model: str, threads: int) -> Iterator[tuple[str, int]]:
    """`hearth serve --radius machine --model MODEL` on `home` with the settings a test's worker gets;
    its base URL and the server's pid, once its engine is loaded."""
    port = free_port()
    with (home / "serve.log").open("ab") as log:
        proc = subprocess.Popen([*HEARTH, "serve", "--port", str(port), "--model", model, "--radius", "machine"],
                                env=env_of(home, models, threads), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/hearth/status", timeout=2).json().get("engine_pid"):
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("hearth serve did not load its model: "
                                   + (home / "serve.log").read_text(errors="replace")[-2000:])
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        stop(proc)
