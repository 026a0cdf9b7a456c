"""A real `hearth node` on loopback for tests, and the RPC server processes behind its leases."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import HEARTH, free_port, hearth_env, wait_answering


@dataclass
class Node:
    url: str
    proc: subprocess.Popen[bytes]
    home: Path
    log: Path


@contextlib.contextmanager
def running_node(home: Path, *args: str, name: str = "test node", **env: str) -> Iterator[Node]:
    """`hearth node` on 127.0.0.1 with its own data folder (and HEARTH_* settings in `env`);
    stopped (and waited for) on the way out."""
    port = free_port()
    log_path = home / f"node-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen([*HEARTH, "node", "--port", str(port), "--name", name, *args],
                            env=hearth_env(home, **env), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url + "/v1/node", proc, log_path)
        yield Node(url, proc, home, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in rpc_server_pids(home):
            os.kill(pid, signal.SIGKILL)


def _cmdline(pid: str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def exited(pid: int) -> bool:
    """No such process, or a zombie (it has exited; only a wait by its parent is missing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def rpc_server_pids(home: Path) -> list[int]:
    """Live RPC server processes whose environment names this data folder (started by its node)."""
    found = []
    marker = f"HEARTH_HOME={home}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if b"hearth.ggml.server" not in _cmdline(pid):
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in env and not exited(int(pid)):
            found.append(int(pid))
    return sorted(found)


def rpc_server_pid(port: int) -> int:
    """The RPC server listening on 127.0.0.1:port (from its command line)."""
    want = f"127.0.0.1:{port}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        cmd = _cmdline(pid)
        if b"hearth.ggml.server" in cmd and want in cmd and not exited(int(pid)):
            return int(pid)
    raise AssertionError(f"no RPC server on port {port}")


def wait_exited(pids: list[int], timeout: float) -> list[int]:
    """The pids still running after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if not exited(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)
