"""Starting and stopping one ggml RPC server child (one per lease).

The child lives only as long as the process that started it: it watches a pipe on its stdin
and exits at EOF, which the kernel delivers however the parent ends (kill -9 too). A parent-
death signal would not do: it fires when the parent *thread* exits, and the node starts
servers from short-lived asyncio.to_thread workers.

With `max_bytes`, the child's address space is capped (RLIMIT_AS, set with prlimit once it
answers): its baseline plus the lease plus a measured slack. ggml then fails the allocation
(the client's model load fails) instead of the node lending more than the lease.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Protocol

from hearth.errors import HearthError
from hearth.ggml.hello import RpcUnreachable, RpcVersion, probe
from hearth.ggml.server import check_endpoint
from hearth.net.endpoint import Endpoint

START_TIMEOUT_S = 30.0
"""How long a new RPC server may take to answer its handshake: a Python start on a busy machine."""

MIB = 1024 * 1024
SLACK_BYTES = 160 * MIB
"""Address space a server may map beyond its lease, whatever the lease's size. Lessees size
leases by weights and KV cache, but llama.cpp also allocates a compute buffer on every RPC
device (measured: 64 MiB for SmolLM2 at n_ctx 2048, 116 MiB at 4096, 68 MiB for Gemma 3 270M
at 2048), and set_tensor holds one tensor in transit (or one cached file) beside its buffer."""
STACK_BYTES = 8 * MIB
"""Virtual size of one compute thread's stack (the default RLIMIT_STACK)."""


def allowance(lease_bytes: int, threads: int) -> int:
    """What a lease's server may map beyond its idle self: the lease, a quarter more (bigger
    models have bigger compute buffers and tensors in transit), the fixed slack, the stacks."""
    return lease_bytes + lease_bytes // 4 + SLACK_BYTES + threads * STACK_BYTES


class RpcServerFailed(HearthError):
    """An RPC server child did not start."""

    code = "rpc_server_failed"


class RpcServer(Protocol):
    """What a lease needs of its RPC server. stop() may be called at any time from any thread,
    also while start() runs: a server stopped before or during its start never serves."""

    @property
    def endpoint(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def alive(self) -> bool: ...
    def start(self) -> RpcVersion: ...
    def stop(self) -> None: ...
    def used(self) -> int:
        """Memory the server holds beyond what it held idle (bytes); 0 once it is gone."""


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RpcServerProcess:
    def __init__(self, host: str, port: int | None = None, cache_dir: Path | None = None,
                 threads: int = 1, log_path: Path | None = None, max_bytes: int | None = None) -> None:
        self.host = host
        self._port = port or free_port(host)
        check_endpoint(self.endpoint)
        self.cache_dir = cache_dir
        self.threads = threads
        self.log_path = log_path
        self.max_bytes = max_bytes
        """What the lease may allocate; None: no cap (the node's own throwaway probe)."""
        self.limit: int | None = None
        """The address-space cap set on the child (bytes), once started."""
        self.idle_rss = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.version: RpcVersion | None = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        return str(Endpoint(self.host, self._port))

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int:
        """Resident memory of the child now (bytes), 0 once it is gone."""
        kib = _status_kib(self.proc.pid, "VmRSS") if self.alive and self.proc else None
        return kib * 1024 if kib is not None else 0

    def used(self) -> int:
        return max(0, self.rss() - self.idle_rss)

    def start(self, timeout: float = START_TIMEOUT_S) -> RpcVersion:
        """Start the child and wait until it answers the handshake; return its protocol version."""
        cmd = [sys.executable, "-m", "hearth.ggml.server", "--endpoint", self.endpoint,
               "--threads", str(self.threads), "--watch-stdin"]
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            cmd += ["--cache-dir", str(self.cache_dir)]
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # One malloc arena: each extra arena reserves 64 MiB of address space, which the cap counts.
        env = dict(os.environ, GGML_NO_BACKTRACE="1", MALLOC_ARENA_MAX="1")
        with self._lock:
            if self._stopped:
                raise RpcServerFailed(f"The RPC server for {self.endpoint} was stopped before it started.")
            log: IO[bytes] | int = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
            try:
                # stdin is the life line: the child exits when this end closes (we stop it, or die).
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                             stdin=subprocess.PIPE)
            finally:
                if not isinstance(log, int):
                    log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._stopped:
                raise RpcServerFailed(f"The RPC server for {self.endpoint} was stopped while starting.")
            if self.proc.poll() is not None:
                raise RpcServerFailed(f"The RPC server for {self.endpoint} exited with {self.proc.returncode}.")
            try:
                self.version = probe(self.host, self._port, timeout=1.0)
            except RpcUnreachable:
                time.sleep(0.05)
                continue
            self.idle_rss = self.rss()
            if self.max_bytes is not None:
                self._cap(self.max_bytes)
            return self.version
        self.stop()
        raise RpcServerFailed(f"The RPC server for {self.endpoint} did not answer within {timeout:.0f} s.")

    def _cap(self, lease_bytes: int) -> None:
        """RLIMIT_AS = what the idle server maps now + its allowance for the lease."""
        assert self.proc is not None
        base = _status_kib(self.proc.pid, "VmSize")
        if base is None:
            raise RpcServerFailed(f"The RPC server for {self.endpoint} died as it started.")
        self.limit = base * 1024 + allowance(lease_bytes, self.threads)
        try:
            resource.prlimit(self.proc.pid, resource.RLIMIT_AS, (self.limit, self.limit))
        except (OSError, ValueError) as exc:  # it died meanwhile, or the system refuses
            self.stop()
            raise RpcServerFailed(f"Could not cap the RPC server's memory: {exc}.") from exc

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()  # it holds no state worth a graceful exit; the weight cache is on disk
            proc.wait(10)
        with self._lock:
            if proc.stdin is not None and not proc.stdin.closed:
                proc.stdin.close()


def local_rpc_version(threads: int = 1) -> RpcVersion:
    """This build's ggml RPC protocol version, from a throwaway loopback server."""
    server = RpcServerProcess("127.0.0.1", threads=threads)
    try:
        return server.start()
    finally:
        server.stop()
