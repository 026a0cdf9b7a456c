"""One lessee cannot hold every slot, tiny leases count, and a full node says so (status, record,
`hearth peers`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import HEARTH, hearth_env
from tests.rpc_pool.nodes import Node, running_node

pytestmark = pytest.mark.slow
MIN_LEASE = 16 * 1024 * 1024


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    with running_node(tmp_path, "--max-memory", "300M") as n:
        yield n


def client(source: str) -> httpx.Client:
    """A lessee on this machine at its own loopback address (the node tells lessees apart by it)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=60)


def test_one_lessee_cannot_take_every_slot_and_zero_byte_leases_count(node: Node) -> None:
    with client("127.0.0.1") as greedy, client("127.0.0.2") as other:
        taken = [greedy.post(node.url + "/v1/leases", json={"bytes": 0}) for _ in range(2)]
        assert [r.status_code for r in taken] == [201, 201]
        assert all(r.json()["bytes"] == MIN_LEASE for r in taken)
        third = greedy.post(node.url + "/v1/leases", json={"bytes": 0})
        assert third.status_code == 409, third.text
        assert "most one lessee may hold" in third.json()["error"]["message"]
        status = greedy.get(node.url + "/v1/node").json()
        assert status["leased_bytes"] == 2 * MIN_LEASE and status["full"] == "0"
        assert status["dev"].startswith(f"CPU,{300_000_000 - 2 * MIN_LEASE},")
        # Another lessee still finds a slot.
        assert other.post(node.url + "/v1/leases", json={"bytes": 0}).status_code == 201


def test_a_full_node_says_so_in_status_record_and_peers(node: Node, tmp_path: Path) -> None:
    with client("127.0.0.1") as a, client("127.0.0.2") as b:
        held = [(c, c.post(node.url + "/v1/leases", json={"bytes": 1}).json()) for c in (a, a, b, b)]
        assert all("lease_id" in lease for _, lease in held), held
        status = a.get(node.url + "/v1/node").json()
        assert status["full"] == "1" and status["dev"].startswith("CPU,0,"), status
        cli_home = tmp_path / "cli"
        cli_home.mkdir()
        port = node.url.rsplit(":", 1)[1]
        peers = subprocess.run([*HEARTH, "peers", "--json", "--wait", "0", "--peer", f"127.0.0.1:{port}"],
                               env=hearth_env(cli_home), capture_output=True, text=True, timeout=120)
        assert peers.returncode == 0, peers.stderr
        [peer] = json.loads(peers.stdout)["peers"]
        assert peer["full"] is True and peer["free_bytes"] == 0
        table = subprocess.run([*HEARTH, "peers", "--wait", "0", "--peer", f"127.0.0.1:{port}"],
                               env=hearth_env(cli_home), capture_output=True, text=True, timeout=120)
        assert "full" in table.stdout and "ready" not in table.stdout, table.stdout
        c, lease = held[0]
        assert c.delete(f"{node.url}/v1/leases/{lease['lease_id']}").status_code == 204
        assert a.get(node.url + "/v1/node").json()["full"] == "0"
