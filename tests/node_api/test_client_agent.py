"""The client against real `hearth node` agents on loopback: a household node (anyone may
lease) and a node that admits paired peers only (signed requests, sealed tunnels)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.errors import NodeUnreachable
from hearth.ggml.hello import RpcVersion, probe
from hearth.identity import NodeIdentity, verify_proof
from hearth.net.b64 import encode as b64
from hearth.net.endpoint import Endpoint
from hearth.node_api.client import NodeClient
from hearth.node_api.errors import LeaseNotFound, LeaseRefused
from hearth.orchestrator.peers import check
from hearth.pairing.exchange import PairingInfo
from hearth.pairing.signed import NotPaired, Unsigned
from hearth.pairing.trust import TrustStore
from hearth.tunnel.wireguard import tunnel_address
from tests.conftest import free_port
from tests.rpc_pool.nodes import running_node

pytestmark = pytest.mark.slow


def at(url: str) -> Endpoint:
    host, _, port = url.removeprefix("http://").rpartition(":")
    return Endpoint(host, int(port))


@pytest.fixture
def household(tmp_path: Path) -> Iterator[Endpoint]:
    with running_node(tmp_path, "--max-memory", "300M") as node:
        yield at(node.url)


def test_status_proof_and_a_lease_cycle(household: Endpoint) -> None:
    async def go() -> None:
        async with NodeClient() as nodes:
            status = await nodes.status(household)
            assert status.record.name == "test node" and status.record.addresses == ("127.0.0.1",)
            assert status.detail.budget == 300_000_000 and status.detail.leases == []
            nonce = os.urandom(32)
            proof = await nodes.prove(household, nonce)
            verify_proof(status.record.node_id, proof.public_key, nonce, proof.signature)

            granted = await nodes.lease(household, 100_000_000)
            assert granted.transport == "plain" and granted.gate.host == "127.0.0.1"
            assert granted.node_id == status.record.node_id and granted.rpc_version == "7.0.0"
            assert str(await asyncio.to_thread(probe, granted.gate.host, granted.gate.port)) == "7.0.0"
            shown = (await nodes.status(household)).detail
            assert shown.leased_bytes == 100_000_000 and shown.leases[0].lease_id == granted.lease_id[:6] + "…"
            alive = await nodes.heartbeat(household, granted.lease_id)
            assert alive.lease_id == granted.lease_id and alive.expires_in > 0
            with pytest.raises(LeaseRefused, match="budget"):
                await nodes.lease(household, 250_000_000)
            await nodes.release(household, granted.lease_id)
            with pytest.raises(LeaseNotFound):
                await nodes.release(household, granted.lease_id)
            with pytest.raises(LeaseNotFound):
                await nodes.heartbeat(household, granted.lease_id)

            peer = await check(nodes, household.host, household.port, "static", RpcVersion(7, 0, 0))
            assert peer.usable and peer.record.node_id == status.record.node_id

    asyncio.run(go())


def test_nothing_listening_is_unreachable() -> None:
    async def go() -> None:
        async with NodeClient(timeout=2.0) as nodes:
            with pytest.raises(NodeUnreachable, match="is `hearth node` running"):
                await nodes.status(Endpoint("127.0.0.1", free_port()))

    asyncio.run(go())


def test_a_paired_only_node_answers_its_paired_peer_alone(tmp_path: Path) -> None:
    ant, stranger = NodeIdentity.load_or_create(tmp_path / "ant"), NodeIdentity.load_or_create(tmp_path / "x")
    bee = tmp_path / "bee"
    info = PairingInfo("ant", b64(ant.public_key), b64(os.urandom(32)), tunnel_address(ant.public_key),
                       ("127.0.0.1:51820",))
    TrustStore(bee).add(info, os.urandom(32))

    async def go(node: Endpoint) -> None:
        async with NodeClient(ant) as nodes:
            status = await nodes.status(node)
            assert status.record.name == "bee"
            granted = await nodes.lease(node, 1000)
            assert granted.transport == "sealed" and granted.gate.host == "127.0.0.1"
            await nodes.heartbeat(node, granted.lease_id)
            await nodes.release(node, granted.lease_id)
        async with NodeClient() as unsigned:
            with pytest.raises(Unsigned, match="hearth pair"):
                await unsigned.status(node)
        async with NodeClient(stranger) as nodes:
            with pytest.raises(NotPaired):
                await nodes.lease(node, 1000)

    with running_node(bee, "--admit", "trusted", "--max-memory", "100M", name="bee", HEARTH_TUNNEL="sealed") as node:
        asyncio.run(go(at(node.url)))
