"""A lease's answer comes only once the node's new RPC server answers its handshake, which may take
START_TIMEOUT_S on a busy machine: Placement waits that long, not the control API's usual 5 s. (Seen
across namespaces: a pooled `hearth contribute` gave up on a node that was only slow.) The agent is
played by httpx.MockTransport (tests/node_api/fakes.py), which records the wait the client allowed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from hearth.ggml.process import START_TIMEOUT_S
from hearth.identity import NodeIdentity
from hearth.node_api import wire
from hearth.node_api.client import DEFAULT_TIMEOUT, NodeClient
from hearth.orchestrator.peers import Peer
from hearth.orchestrator.placement import LEASE_WAIT_S, Placement
from hearth.orchestrator.planner import Assignment, NodeCapacity, Plan
from tests.node_api.fakes import agent, record


def test_a_lease_request_waits_as_long_as_a_new_rpc_server_may_take_to_start(tmp_path: Path) -> None:
    me, node = NodeIdentity.load_or_create(tmp_path / "me"), NodeIdentity.load_or_create(tmp_path / "node")
    inner = agent(node)
    waited: list[float] = []
    connecting: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == wire.LEASES:
            waited.append(request.extensions["timeout"]["read"])
            connecting.append(request.extensions["timeout"]["connect"])
        return inner.handle_request(request)

    remote = Assignment(NodeCapacity(node.node_id, "den pc", "CPU", 10**9), 30, 10**8, "the rest")
    plan = Plan("smollm2-135m", 2048, 10**8, (remote,))

    async def go() -> tuple[str, ...]:
        placement = Placement(plan, {node.node_id: Peer(record(node), "mdns", True, True)}, me)
        placement._nodes = NodeClient(me, transport=httpx.MockTransport(handle))
        await placement.acquire()
        try:
            return placement.endpoints
        finally:
            await placement.release()

    assert asyncio.run(go()) == ("192.0.2.7:50123",)
    assert waited == [LEASE_WAIT_S] and LEASE_WAIT_S > START_TIMEOUT_S > DEFAULT_TIMEOUT
    assert connecting == [DEFAULT_TIMEOUT]  # a node that vanished still fails within the usual 5 s
