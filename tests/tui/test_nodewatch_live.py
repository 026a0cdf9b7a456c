"""The dashboard's watch of real `hearth node` agents on 127.0.0.1 (hearth.tui.nodewatch): found by
the dashboard's own circle lookup (a static peer), read with `GET /v1/node` (lent = its budget,
used after a real lease), its events followed into the log under its name, drained, killed; and
nodes that answer junk. No `hearth serve` runs: the node list comes from the circle alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from hearth.discovery.static import save_static_peers
from hearth.identity import NodeIdentity
from hearth.net.b64 import encode as b64
from hearth.net.endpoint import Endpoint
from hearth.node_api.client import NodeClient
from hearth.node_api.status import NodeView, ServeStatus
from hearth.pairing.exchange import PairingInfo
from hearth.pairing.trust import TrustStore
from hearth.settings import load_settings
from hearth.tui.app import DashApp
from hearth.tui.client import DashClient, NodeFeedClient
from hearth.tui.nodewatch import read_once
from hearth.tui.source import FixedSource, NodeReader, node_client
from hearth.tui.source import LiveSource as Live
from hearth.tui.widgets.events import EventLog
from hearth.tui.widgets.nodes import NodesView
from hearth.tunnel.wireguard import tunnel_address
from tests.cli.inprocess import hearth_here
from tests.conftest import free_port
from tests.rpc_pool.nodes import running_node

pytestmark = pytest.mark.slow


def shown(app: DashApp, name: str) -> NodeView | None:
    return next((n for n in app.query_one(NodesView).nodes if n.name == name), None)


async def until(check: Callable[[], object], seconds: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"the dashboard never showed {what}"
        await asyncio.sleep(0.05)


def test_a_real_node_lent_used_its_events_draining_and_killed(tmp_path: Path) -> None:
    dash_home = tmp_path / "dash"
    with running_node(tmp_path, "--max-memory", "300M", name="attic") as node:
        address = node.url.removeprefix("http://")
        save_static_peers(dash_home, [address])
        budget = httpx.get(node.url + "/v1/node", timeout=10).json()["budget"]
        source = Live(DashClient(f"http://127.0.0.1:{free_port()}"), load_settings(home=dash_home), wait=0.0)

        async def go() -> tuple[list[str], list[NodeView]]:
            app = DashApp(source, nodes_s=0.5)
            async with app.run_test(size=(120, 40)) as pilot:
                await until(lambda: (n := shown(app, "attic")) is not None and n.lent_bytes == budget, 30, "lent")
                attic = shown(app, "attic")
                assert attic is not None and attic.used_bytes == 0 and attic.state == "up" and attic.rtt_ms is not None
                async with NodeClient() as nodes:
                    await nodes.lease(Endpoint.parse(address), 20_000_000, timeout=60)
                    await until(lambda: (n := shown(app, "attic")) is not None and (n.used_bytes or 0) > 0, 20, "used")
                    log = app.query_one(EventLog)
                    await until(lambda: any(line.startswith("attic: ") and "lease_taken" in line
                                            for line in log.entries), 20, "the node's event")
                    await nodes.drain(Endpoint.parse(address))
                    await until(lambda: (n := shown(app, "attic")) is not None and n.state == "draining", 20,
                                "draining")
                    node.proc.send_signal(signal.SIGKILL)
                    node.proc.wait(10)
                    await until(lambda: (n := shown(app, "attic")) is not None and n.state == "unreachable", 20,
                                "unreachable")
                    await pilot.pause(1.5)  # a follower retrying: no traceback, one line per problem
                return list(log.entries), list(app.query_one(NodesView).nodes)
        lines, nodes = asyncio.run(go())
    attic = next(n for n in nodes if n.name == "attic")
    assert attic.state == "unreachable" and attic.rtt_ms is None and attic.used_bytes is None  # as the circle says
    problems = [line for line in lines if line.startswith("attic: (status")]
    assert len(problems) == 1, lines
    assert not any("Traceback" in line for line in lines)


def test_once_json_lists_the_nodes_as_their_agents_say(tmp_path: Path) -> None:
    dash_home = tmp_path / "dash"
    with running_node(tmp_path, "--max-memory", "200M", name="barn") as node:
        save_static_peers(dash_home, [node.url.removeprefix("http://")])
        budget = httpx.get(node.url + "/v1/node", timeout=10).json()["budget"]
        result = hearth_here(dash_home, "dash", "--once", "--json", "--url", f"http://127.0.0.1:{free_port()}",
                             "--wait", "0")
    shot = json.loads(result.stdout)
    barn = next(n for n in shot["nodes"] if n["name"] == "barn")
    assert (barn["lent_bytes"], barn["used_bytes"], barn["free_bytes"], barn["state"]) == (budget, 0, budget, "up")
    assert barn["address"] == node.url.removeprefix("http://") and barn["rtt_ms"] is not None


class Junk(BaseHTTPRequestHandler):
    """Answers every GET with one kind of junk (per server: `kind`)."""

    kind: ClassVar[str] = ""
    BODIES: ClassVar[dict[str, bytes]] = {
        "malformed": b'{"id": "n-j", "name": ',
        "types": json.dumps({"id": 5, "name": [], "v": None, "budget": "lots", "leases": "x"}).encode(),
        "huge": b'{"id": "' + b"x" * (3 * 1024 * 1024) + b'"}',
        "events": b"data: {not json\n\n",
    }

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = self.BODIES[self.kind]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream" if self.path.startswith("/v1/node/events")
                         else "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        return None


@pytest.fixture
def junk_nodes() -> Iterator[list[tuple[str, str]]]:
    servers = []
    for kind in ("malformed", "types", "huge", "events"):
        handler = type(f"Junk{kind}", (Junk,), {"kind": kind})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append((kind, server))
    try:
        yield [(kind, f"127.0.0.1:{s.server_address[1]}") for kind, s in servers]
    finally:
        for _, server in servers:
            server.shutdown()
            server.server_close()


class JunkSource(FixedSource):
    def __init__(self, status: ServeStatus, reader: NodeReader) -> None:
        super().__init__(status)
        self.reader = reader

    def node_reader(self) -> NodeReader:
        return self.reader


def test_nodes_answering_junk_are_unreachable_and_nothing_crashes(junk_nodes: list[tuple[str, str]]) -> None:
    status = ServeStatus(version="1", nodes=[
        NodeView(node_id=f"n-{kind}", name=kind, radius="household", state="up", address=address)
        for kind, address in junk_nodes])

    async def go() -> tuple[list[str], list[NodeView]]:
        async with NodeFeedClient() as reader:
            app = DashApp(JunkSource(status, reader), nodes_s=0.3)
            async with app.run_test(size=(120, 40)) as pilot:
                await until(lambda: all(n.state == "unreachable" for n in app.query_one(NodesView).nodes), 20,
                            "unreachable")
                log = app.query_one(EventLog)
                await until(lambda: any(line.startswith("events: (event stream") for line in log.entries), 20,
                            "the junk stream's problem")
                await pilot.pause(1.0)
                return list(log.entries), list(app.query_one(NodesView).nodes)
    lines, nodes = asyncio.run(go())
    assert [n.state for n in nodes] == ["unreachable"] * 4
    for kind, _ in junk_nodes:  # each problem said once, however often it was read
        assert len([line for line in lines if line.startswith(f"{kind}: (status")]) == 1, lines
    assert any("more than" in line for line in lines if line.startswith("huge: "))
    assert not any("Traceback" in line for line in lines)


def test_a_paired_only_node_is_read_and_followed_with_this_machines_signature(tmp_path: Path) -> None:
    """The dashboard's machine (`ant`) is paired with node `bee`, which admits paired peers only."""
    ant_home, bee_home = tmp_path / "ant", tmp_path / "bee"
    ant = NodeIdentity.load_or_create(ant_home)
    TrustStore(bee_home).add(PairingInfo("ant", b64(ant.public_key), b64(os.urandom(32)),
                                         tunnel_address(ant.public_key), ("127.0.0.1:51820",)), os.urandom(32))
    with running_node(bee_home, "--admit", "trusted", "--max-memory", "100M", name="bee",
                      HEARTH_TUNNEL="sealed") as node:
        address = node.url.removeprefix("http://")

        async def go() -> tuple[list[NodeView], list[NodeView], str]:
            async with NodeClient(ant) as nodes:
                bee_id = (await nodes.status(Endpoint.parse(address))).record.node_id
                await nodes.lease(Endpoint.parse(address), 1000, timeout=60)
            status = ServeStatus(version="1", nodes=[NodeView(node_id=bee_id, name="bee", radius="trusted",
                                                              address=address)])
            async with node_client(load_settings(home=ant_home)) as signed, NodeFeedClient() as unsigned:
                mine, theirs = await read_once(signed, status, None), await read_once(unsigned, status, None)
                stream = signed.node_events(address, 0)
                try:
                    first = await asyncio.wait_for(anext(aiter(stream)), 10)
                finally:
                    await stream.aclose()  # type: ignore[attr-defined]
            return mine, theirs, first.kind
        mine, theirs, kind = asyncio.run(go())
    assert mine[0].state == "up" and mine[0].lent_bytes == 100 * 10**6 and (mine[0].used_bytes or 0) > 0
    assert theirs[0].state == "unreachable" and kind == "lease_taken"
