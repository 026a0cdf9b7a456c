"""`NodeWatch`'s bounds and lifecycle with a recording reader in place of the network (the real
agents are tests/tui/test_nodewatch_live.py's): at most 16 nodes read and followed, a node gone
from the list is no longer followed, a hung node is cut at the timeout, a failing stream is opened
again with backoff and its problem said once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hearth.node_api.status import DashEvent
from hearth.node_api.wire import NodeStatus
from hearth.tui.client import DashUnreachable
from hearth.tui.nodemerge import WATCH_MAX, Target
from hearth.tui.nodewatch import NodeWatch


class Recording:
    """Node `n3` hangs; every stream fails at once (counted) unless its node is `ok-*`."""

    def __init__(self) -> None:
        self.opened: dict[str, int] = {}
        self.live: set[str] = set()

    async def node_status(self, endpoint: str) -> NodeStatus:
        node_id = endpoint.split(":")[0]
        if node_id == "n3":
            await asyncio.sleep(60)
        return NodeStatus(id=node_id, name=node_id, v="1", rpc="3.0.0", port="1", dev="CPU", budget=100, leased_bytes=0)

    async def node_events(self, endpoint: str, since: int) -> AsyncIterator[DashEvent]:
        node_id = endpoint.split(":")[0]
        self.opened[node_id] = self.opened.get(node_id, 0) + 1
        if not node_id.startswith("ok"):
            raise DashUnreachable("the node does not answer (ConnectError)")
        self.live.add(node_id)
        try:
            yield DashEvent(seq=since + 1, at=0.0, kind="lease_taken", message="x took 1 bytes")
            await asyncio.sleep(60)
        finally:
            self.live.discard(node_id)


def target(node_id: str) -> Target:
    return Target(node_id, node_id, f"{node_id}:1")


def test_reads_are_bounded_in_number_and_time() -> None:
    said: list[str] = []

    async def go() -> dict[str, object]:
        watch = NodeWatch(Recording(), lambda t, e: None, said.append, timeout=0.2)
        readings = await asyncio.wait_for(watch.read([target(f"n{i}") for i in range(40)]), 5)
        again = await watch.read([target("n3")])
        return {"n": len(readings), "n3": readings["n3"].problem, "n0": readings["n0"].status, "again": again}
    got = asyncio.run(go())
    assert got["n"] == WATCH_MAX and got["n0"] is not None
    assert got["n3"] == "no answer within 0.2 s"
    assert said == ["n3: (status: no answer within 0.2 s)"]  # said once, not at the second read


def test_followers_are_bounded_stopped_when_gone_and_back_off() -> None:
    reader, events, said = Recording(), [], []

    async def go() -> tuple[int, int, set[str], int]:
        watch = NodeWatch(reader, lambda t, e: events.append((t.name, e.kind)), said.append, backoff=(0.05, 0.2))
        watch.follow([target(f"ok{i}") for i in range(20)] + [target("bad")])
        await asyncio.sleep(0.2)
        first = len(watch.following)
        watch.follow([target("ok0"), target("bad")])
        await asyncio.sleep(0.6)
        count, live = len(watch.following), set(reader.live)
        await watch.aclose()
        return first, count, live, reader.opened.get("bad", 0)
    first, count, live, bad_opened = asyncio.run(go())
    assert first == WATCH_MAX and count == 2 and live == {"ok0"}
    assert 3 <= bad_opened <= 6  # 0.05, 0.1, 0.2, 0.2 s apart: backed off, not hammered
    assert said == ["bad: (event stream: the node does not answer (ConnectError))"]
    assert ("ok0", "lease_taken") in events and all(name.startswith("ok") for name, _ in events)
