"""`GET /v1/node/events` of a real `hearth node`: leases taken, released and ended (its RPC server
killed: the expiry loop ends the lease within a tick), replay, and no full lease id in the stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from hearth.node_api.status import NODE_EVENTS_PATH, DashEvent
from tests.rpc_pool.nodes import rpc_server_pids, running_node

pytestmark = pytest.mark.slow


def parse_sse(raw: str) -> list[DashEvent]:
    return [DashEvent.model_validate(json.loads(line[6:])) for block in raw.split("\n\n")
            for line in block.split("\n") if line.startswith("data: ")]


async def read_until(url: str, kinds: list[str], seconds: float = 30) -> tuple[str, list[DashEvent]]:
    raw = ""
    async with httpx.AsyncClient(timeout=seconds) as client, client.stream("GET", url) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        async with asyncio.timeout(seconds):
            async for chunk in r.aiter_text():
                raw += chunk
                if [e.kind for e in parse_sse(raw)][-len(kinds):] == kinds:
                    break
    return raw, parse_sse(raw)


def test_lease_events_taken_released_and_expired(tmp_path: Path) -> None:
    with running_node(tmp_path, "--max-memory", "300M") as node:
        events_url = node.url + NODE_EVENTS_PATH

        async def main() -> tuple[str, list[DashEvent], list[str]]:
            reading = asyncio.create_task(read_until(events_url, ["lease_taken", "lease_released",
                                                                  "lease_taken", "lease_expired"]))
            await asyncio.sleep(0.3)
            async with httpx.AsyncClient(timeout=30) as c:
                first = (await c.post(node.url + "/v1/leases", json={"bytes": 1_000_000})).json()["lease_id"]
                assert (await c.delete(f"{node.url}/v1/leases/{first}")).status_code == 204
                second = (await c.post(node.url + "/v1/leases", json={"bytes": 2_000_000})).json()["lease_id"]
            deadline = time.monotonic() + 10
            while not (pids := rpc_server_pids(tmp_path)) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            raw, events = await reading
            return raw, events, [first, second]

        raw, events, ids = asyncio.run(main())
        kinds = [e.kind for e in events]
        assert kinds == ["lease_taken", "lease_released", "lease_taken", "lease_expired"], kinds
        assert int(events[0].data["bytes"] or 0) >= 1_000_000 and events[0].data["holder"] == "127.0.0.1"
        assert events[0].data["lease"] == ids[0][:6] and events[3].data["lease"] == ids[1][:6]
        assert [e.seq for e in events] == [1, 2, 3, 4]
        assert all(i not in raw for i in ids)  # the full id renews or releases a lease: never shown

        _, replay = asyncio.run(read_until(events_url + "?since=2", ["lease_expired"], 5))
        assert [e.seq for e in replay] == [3, 4]
        _, replay = asyncio.run(read_until_header(events_url, "3"))
        assert [e.seq for e in replay] == [4]
        for query in ("since=-1", "since=x", "since=" + "9" * 30):
            r = httpx.get(f"{events_url}?{query}", timeout=5)
            assert r.status_code == 400 and r.json()["error"]["param"] == "since"
        assert httpx.post(events_url, timeout=5).status_code == 405


async def read_until_header(url: str, last: str) -> tuple[str, list[DashEvent]]:
    raw = ""
    async with httpx.AsyncClient(timeout=5) as client, \
            client.stream("GET", url, headers={"Last-Event-ID": last}) as r:
        async with asyncio.timeout(5):
            async for chunk in r.aiter_text():
                raw += chunk
                if any(e.kind == "lease_expired" for e in parse_sse(raw)):
                    break
    return raw, parse_sse(raw)


def test_pairing_and_unpairing_while_the_node_runs_go_on_its_feed(tmp_path: Path) -> None:
    """watch_trust with the real trust store and lease manager (no WireGuard, no sockets)."""
    from hearth.identity import NodeIdentity
    from hearth.net.b64 import encode as b64
    from hearth.node_api.feed import Feed
    from hearth.pairing.exchange import PairingInfo
    from hearth.pairing.trust import TrustStore
    from hearth.rpc_pool.leases import LeaseManager
    from hearth.rpc_pool.node import watch_trust
    from hearth.tunnel.wireguard import tunnel_address

    ident = NodeIdentity.load_or_create(tmp_path / "barn")
    info = PairingInfo("barn", b64(ident.public_key), b64(os.urandom(32)), tunnel_address(ident.public_key),
                       ("127.0.0.1:51820",), 11436)
    trust = TrustStore(tmp_path)
    manager = LeaseManager("127.0.0.1", 10**8, tmp_path / "cache", tmp_path / "logs", threads=1)
    feed = Feed()

    async def main() -> None:
        watcher = asyncio.create_task(watch_trust(trust, manager, None, interval=0.02, feed=feed))
        try:
            await asyncio.sleep(0.1)
            trust.add(info, os.urandom(32))
            await asyncio.sleep(0.2)
            trust.remove("barn")
            await asyncio.sleep(0.2)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    asyncio.run(main())
    events = feed.since(0)
    assert [(e.kind, e.data["name"]) for e in events] == [("paired", "barn"), ("unpaired", "barn")]
    assert info.wireguard_key not in json.dumps([e.model_dump() for e in events])
