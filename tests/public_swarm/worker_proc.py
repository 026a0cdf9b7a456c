"""Real `hearth coordinator` (on a port of the test's choosing, so it can be restarted in place)
and `hearth contribute` processes, for the worker link's tests."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator.client import CoordinatorClient
from hearth.public_swarm.coordinator.wire import WorkerView
from tests.conftest import HEARTH, REPO, hearth_env, wait_answering

FIRST_LINK_S = 180
"""A worker links only after loading its model and measuring its decode speed: a minute or more
when other tests load this 2-core machine."""


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    """SIGTERM, then SIGKILL after `timeout`; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextmanager
def coordinator_at(home: Path, port: int, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`hearth coordinator --bind 127.0.0.1 --port PORT ARGS` with its database in `home`."""
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / f"coordinator-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*HEARTH, "coordinator", "--bind", "127.0.0.1", "--port", str(port), *args],
                                env=hearth_env(home, HEARTH_SPOT_CHECKS="off"), stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO)
    try:
        wait_answering(f"http://127.0.0.1:{port}/v1/prices", proc, log_path)
        yield proc
    finally:
        stop(proc)


@contextmanager
def contributor(home: Path, url: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`hearth contribute --coordinator URL ARGS` until the block ends (SIGTERM)."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / "contribute.log").open("ab") as log:
        proc = subprocess.Popen([*HEARTH, "contribute", "--coordinator", url, *args],
                                env=hearth_env(home), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        yield proc
    finally:
        stop(proc)


def live(url: str, identity: NodeIdentity) -> dict[str, WorkerView]:
    """GET /v1/workers as `identity`: the listed workers by node id."""

    async def ask() -> dict[str, WorkerView]:
        async with CoordinatorClient(url, identity) as client:
            return {w.node_id: w for w in (await client.workers()).data}

    return asyncio.run(ask())


def wait_for(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> float:
    """Poll `check()` until true; the seconds it took. Fails with `what` (and the log) after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise AssertionError(f"{what}: not within {timeout} s\n{tail}")
        time.sleep(0.2)
    return time.monotonic() - start
