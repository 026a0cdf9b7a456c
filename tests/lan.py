"""Fixtures' helper: a household of network namespaces (scripts/lan.py) with hearth nodes in them."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("hearth_lan", REPO / "scripts" / "lan.py")
assert _spec and _spec.loader
lan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lan)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (CI runs as root)")


@dataclass
class Household:
    prefix: str
    machines: list[tuple[str, str]]
    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ns(self, i: int) -> str:
        return self.machines[i - 1][0]

    def addr(self, i: int) -> str:
        return self.machines[i - 1][1]

    def home(self, i: int) -> Path:
        return self.tmp / f"home{i}"

    def env(self, i: int, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
        env.update({"HEARTH_HOME": str(self.home(i)), "HEARTH_N_CTX": "2048", "HEARTH_N_THREADS": "1"})
        env.update(extra)  # a test may set the defaults above otherwise
        return env

    def run(self, i: int, *argv: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(i), *argv], env=self.env(i, **env),
                              capture_output=True, text=True, timeout=timeout)

    def spawn(self, i: int, *argv: str, **env: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"proc{len(self.procs)}-{i}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns(i), *argv], env=self.env(i, **env),
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        return proc

    def hearth(self, i: int, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(i, sys.executable, "-m", "hearth.cli.main", *args, **env)

    def start_node(self, i: int, max_memory: str, name: str | None = None) -> subprocess.Popen[bytes]:
        self.home(i).mkdir(parents=True, exist_ok=True)
        proc = self.spawn(i, sys.executable, "-m", "hearth.cli.main", "node", "--bind", self.addr(i),
                          "--name", name or f"node{i}", "--max-memory", max_memory)
        self.wait_http(i, f"http://{self.addr(i)}:11436/v1/node")
        return proc

    def start_serve(self, i: int, port: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """`hearth serve --port PORT ARGS` on machine i, once its status answers."""
        proc = self.spawn(i, sys.executable, "-m", "hearth.cli.main", "serve", "--port", port, *args, **env)
        self.wait_http(i, f"http://127.0.0.1:{port}/hearth/status", timeout=120)
        return proc

    def pids(self, i: int) -> list[int]:
        """Every process in machine i's namespace (its node agent and the RPC servers it started)."""
        return [int(p) for p in lan.pids(self.ns(i))]

    def wait_http(self, i: int, url: str, timeout: float = 60) -> None:
        code = f"import httpx,sys; httpx.get({url!r}, timeout=1).raise_for_status()"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run(i, sys.executable, "-c", code, timeout=10).returncode == 0:
                return
            time.sleep(0.3)
        raise AssertionError(f"{url} did not answer within {timeout} s; logs in {self.tmp}")

    def peers(self, i: int, *args: str) -> dict[str, object]:
        r = self.hearth(i, "peers", "--json", *args)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]


@contextmanager
def household(tmp: Path, n: int) -> Iterator[Household]:
    prefix = "h" + secrets.token_hex(2)
    try:
        machines = lan.up(n, prefix)
        yield Household(prefix, machines, tmp)
    finally:
        lan.down(prefix)
        leftover = lan.existing(prefix)
        assert not leftover, f"namespaces left behind: {leftover}"
