"""Drain and stop a node: who may ask (in process), then a real `hearth node` drained and stopped."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from hearth.discovery.records import DeviceInfo
from hearth.errors import HearthError
from hearth.ggml.hello import RpcVersion
from hearth.identity import NodeIdentity
from hearth.net.endpoint import Endpoint
from hearth.node_api import wire
from hearth.node_api.client import NodeClient
from hearth.node_api.errors import LeaseRefused
from hearth.pairing.signed import Verifier, sign
from hearth.rpc_pool import control
from hearth.rpc_pool.agent import create_agent_app
from hearth.rpc_pool.leases import LeaseManager
from tests.rpc_pool.nodes import rpc_server_pid, rpc_server_pids, running_node, wait_exited

Client = httpx.AsyncClient


def in_process(home: Path, check: Callable[[Callable[[str], Client], NodeIdentity, LeaseManager, list[str]],
                                           Awaitable[None]], paired_only: bool = False) -> None:
    identity = NodeIdentity.load_or_create(home)
    manager = LeaseManager("127.0.0.1", 10**9, home / "cache", home / "logs", threads=1)
    stops: list[str] = []
    app = create_agent_app(identity, "kitchen", 1, "127.0.0.1", RpcVersion(3, 0, 0),
                           lambda: [DeviceInfo("CPU", 10**9, 2 * 10**9)], manager,
                           paired_only=Verifier(lambda _: None) if paired_only else None)
    for m in app.user_middleware:  # the real middleware, with a stop that only notes the call
        if m.cls is control.NodeControl:
            m.kwargs["stop"] = lambda: stops.append("stop")

    async def main() -> None:
        def client(address: str) -> Client:
            transport = httpx.ASGITransport(app, client=(address, 40000))  # type: ignore[arg-type]
            return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")

        await check(client, identity, manager, stops)

    asyncio.run(main())


def test_only_this_machine_drains_or_stops(tmp_path: Path) -> None:
    other = NodeIdentity.load_or_create(tmp_path / "other")

    async def check(client: Callable[[str], Client], me: NodeIdentity, manager: LeaseManager,
                    stops: list[str]) -> None:
        async with client("192.0.2.7") as far:
            for path in (wire.DRAIN, wire.STOP):
                r = await far.post(path)
                assert r.status_code == 403 and r.json()["error"]["code"] == "not_this_machine", r.text
                assert "kitchen" in r.json()["error"]["message"]
                r = await far.post(path, content=b"", headers=sign(other, "POST", path, b""))
                assert r.status_code == 403, r.text
            assert not control.draining(manager) and stops == []
            body = json.dumps({"draining": True}).encode()
            r = await far.post(wire.DRAIN, content=body, headers=sign(me, "POST", wire.DRAIN, body))
            assert r.status_code == 200 and r.json()["draining"] is True, r.text
            replay = await far.post(wire.DRAIN, content=body, headers=dict(r.request.headers))
            assert replay.status_code == 403  # a captured request cannot be sent again
        async with client("127.0.0.1") as near:
            for bad in (b"{", b"[]", b'{"draining": "yes"}', b'{"x": 1}', b"x" * 5000):
                r = await near.post(wire.DRAIN, content=bad)
                assert r.status_code == 400 and r.json()["error"]["message"], (bad, r.text)
            assert (await near.get(wire.DRAIN)).status_code == 400
            r = await near.post(wire.DRAIN, json={"draining": False})
            assert r.json() == {"node_id": me.node_id, "name": "kitchen", "draining": False, "stopping": False,
                                "leases": 0}
            assert (await near.get(wire.STATUS)).json()["full"] == "0"
            await near.post(wire.DRAIN)
            assert (await near.get(wire.STATUS)).json()["full"] == "1"  # planners pass a draining node by
            r = await near.post(wire.STOP)
            assert r.status_code == 200 and r.json()["stopping"] is True
        await asyncio.sleep(control.STOP_AFTER_S + 0.1)
        assert stops == ["stop"]

    in_process(tmp_path, check)


def test_a_paired_only_node_takes_drain_from_its_own_machine(tmp_path: Path) -> None:
    async def check(client: Callable[[str], Client], me: NodeIdentity, manager: LeaseManager,
                    stops: list[str]) -> None:
        async with client("127.0.0.1") as near:
            assert (await near.get(wire.STATUS)).status_code == 401  # PairedOnly still guards the rest
            assert (await near.post(wire.DRAIN)).status_code == 200
        async with client("10.99.0.5") as tunnel:  # its own WireGuard address: signed by its own key
            body = b'{"draining": false}'
            r = await tunnel.post(wire.DRAIN, content=body, headers=sign(me, "POST", wire.DRAIN, body))
            assert r.status_code == 200 and r.json()["draining"] is False

    in_process(tmp_path, check, paired_only=True)


@pytest.mark.slow
def test_a_real_node_drains_then_stops_with_its_rpc_servers(tmp_path: Path) -> None:
    with running_node(tmp_path, "--max-memory", "300M", name="attic") as node:
        lease = httpx.post(node.url + "/v1/leases", json={"bytes": 1}, timeout=60).json()
        pid = rpc_server_pid(int(lease["endpoint"].rsplit(":", 1)[1]))
        at = Endpoint.parse(node.url.removeprefix("http://"))

        async def drain() -> wire.ControlAnswer:
            async with NodeClient(NodeIdentity.load_or_create(tmp_path)) as nodes:  # signed: this node's key
                answer = await nodes.drain(at)
                with pytest.raises(LeaseRefused) as refused:
                    await nodes.lease(at, 1)
                assert "Node attic is draining" in refused.value.message and "1 running" in refused.value.message
                await nodes.heartbeat(at, lease["lease_id"])  # the running lease goes on
                return answer

        answer = asyncio.run(drain())
        assert answer.draining and answer.leases == 1 and answer.name == "attic"

        async def stop() -> wire.ControlAnswer:
            async with NodeClient() as nodes:  # unsigned, from loopback
                return await nodes.stop(at)

        started = time.monotonic()
        assert asyncio.run(stop()).stopping
        node.proc.wait(10)
        assert time.monotonic() - started < 10
        assert wait_exited([pid], timeout=2) == [] and rpc_server_pids(tmp_path) == []
        log = node.log.read_text()
        assert "Traceback" not in log, log
        assert node.proc.returncode in (0, 143), (node.proc.returncode, log)

        async def gone() -> None:
            async with NodeClient(timeout=2) as nodes:
                with pytest.raises(HearthError):
                    await nodes.drain(at)

        asyncio.run(gone())
