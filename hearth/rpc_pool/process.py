"""Starting and stopping one ggml RPC server child (one per lease)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from hearth.errors import HearthError
from hearth.rpc_pool.hello import RpcUnreachable, RpcVersion, probe
from hearth.rpc_pool.server import check_endpoint


class RpcServerFailed(HearthError):
    """An RPC server child did not start."""

    code = "rpc_server_failed"


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RpcServerProcess:
    def __init__(self, host: str, port: int | None = None, cache_dir: Path | None = None,
                 threads: int = 1, log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        check_endpoint(self.endpoint)
        self.cache_dir = cache_dir
        self.threads = threads
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.version: RpcVersion | None = None

    @property
    def endpoint(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> RpcVersion:
        """Start the child and wait until it answers the handshake; return its protocol version."""
        cmd = [sys.executable, "-m", "hearth.rpc_pool.server", "--endpoint", self.endpoint,
               "--threads", str(self.threads)]
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            cmd += ["--cache-dir", str(self.cache_dir)]
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            env = dict(os.environ, GGML_NO_BACKTRACE="1")
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)
        finally:
            if self.log_path:
                log.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RpcServerFailed(f"The RPC server for {self.endpoint} exited with {self.proc.returncode}.")
            try:
                self.version = probe(self.host, self.port, timeout=1.0)
                return self.version
            except RpcUnreachable:
                time.sleep(0.05)
        self.stop()
        raise RpcServerFailed(f"The RPC server for {self.endpoint} did not answer within {timeout:.0f} s.")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # it holds no state worth a graceful exit; the weight cache is on disk
            self.proc.wait(10)
