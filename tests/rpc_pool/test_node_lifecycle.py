"""RPC servers live only as long as their node: kill -9, SIGTERM and SIGINT all end them."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.rpc_pool.nodes import rpc_server_pid, rpc_server_pids, running_node, wait_exited

pytestmark = pytest.mark.slow


def lease_pid(url: str) -> int:
    r = httpx.post(url + "/v1/leases", json={"bytes": 1}, timeout=60)
    assert r.status_code == 201, r.text
    return rpc_server_pid(int(r.json()["endpoint"].rsplit(":", 1)[1]))


def test_rpc_servers_die_with_a_node_killed_by_sigkill(tmp_path: Path) -> None:
    with running_node(tmp_path) as node:
        pid = lease_pid(node.url)
        node.proc.kill()
        node.proc.wait(5)
        assert wait_exited([pid], timeout=5) == [], "the RPC server outlived its node (kill -9)"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_the_node_and_its_rpc_servers(tmp_path: Path, sig: signal.Signals) -> None:
    with running_node(tmp_path) as node:
        pid = lease_pid(node.url)
        started = time.monotonic()
        node.proc.send_signal(sig)
        node.proc.wait(5)
        took = time.monotonic() - started
        assert wait_exited([pid], timeout=1) == [], f"the RPC server outlived its node ({sig.name})"
        assert rpc_server_pids(tmp_path) == []
        assert "Traceback" not in node.log.read_text(), node.log.read_text()
        assert took < 5
