"""Shared fixtures: a data folder with the embedded models, a real `hearth serve`, hygiene checks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
HEARTH = [sys.executable, "-m", "hearth.cli.main"]
N_CTX = 2048


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hearth_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env.update({"HEARTH_HOME": str(home), "HEARTH_N_CTX": str(N_CTX), "HEARTH_N_THREADS": "2",
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)  # a test may set the defaults above otherwise
    return env


def _engine_pids(marker: str) -> list[int]:
    """Engine children whose command line names a path under `marker` (our temp folders)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "hearth.engine.worker" in cmd and marker in cmd:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="session")
def models_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A data folder with both embedded models imported (shared: importing costs seconds)."""
    home = tmp_path_factory.mktemp("hearth-home")
    from hearth.models.pull import resolve
    from hearth.models.store import ModelStore

    store = ModelStore(home / "models")
    resolve(store, "smollm2-135m")
    resolve(store, "gemma3-270m")
    yield home
    leftover = _engine_pids(str(home))
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    assert not leftover, f"engine processes outlived their tests: {leftover}"


@pytest.fixture(scope="session")
def smollm2_path(models_home: Path) -> Path:
    from hearth.models.store import ModelStore

    return ModelStore(models_home / "models").model_path("smollm2-135m")


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    home: Path
    api_key: str | None = None

    @property
    def base(self) -> str:
        return self.url + "/v1"

    def status(self) -> dict[str, object]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.get(self.url + "/hearth/status", headers=headers, timeout=10).json()  # type: ignore[no-any-return]


def wait_answering(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until `url` gives any HTTP answer (a paired-only node answers 401); the log if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{url} did not answer: {log.read_text()}") from None
            time.sleep(0.1)


def start_server(home: Path, *args: str, **env: str) -> Server:
    port = free_port()
    log = open(home / f"serve-{port}.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([*HEARTH, "serve", "--port", str(port), *args], env=hearth_env(home, **env),
                            stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    log.close()
    url = f"http://127.0.0.1:{port}"
    wait_answering(url + "/", proc, home / f"serve-{port}.log")
    return Server(url, proc, home)


def stop_server(server: Server) -> None:
    server.proc.send_signal(signal.SIGINT)
    try:
        server.proc.wait(15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def server(models_home: Path) -> Iterator[Server]:
    """One real `hearth serve` for the HTTP tests; one slot and a queue of one waiter, to test 429."""
    srv = start_server(models_home, HEARTH_MAX_QUEUE="1", HEARTH_PARALLEL="1")
    yield srv
    stop_server(srv)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Like zeroconf's conftest: a test must not leave threads running behind it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"threads leaked: {extra}"
