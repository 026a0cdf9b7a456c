"""`hearth dash --once [--json]` through the CLI: with nothing running it says how to start
`hearth serve` (exit 12) and still lists the paired peers; the live app without a server says the
same on screen. Against a real `hearth serve`: tests/tui/test_live.py."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from hearth.identity import NodeIdentity
from hearth.net.b64 import encode as b64
from hearth.pairing.exchange import PairingInfo
from hearth.pairing.trust import TrustStore
from hearth.settings import load_settings
from hearth.tui.app import DashApp
from hearth.tui.client import DashClient
from hearth.tui.source import LiveSource
from hearth.tunnel.wireguard import tunnel_address
from tests.cli.inprocess import hearth_here
from tests.conftest import free_port


def paired_with_attic(home: Path) -> str:
    """A paired peer whose machine is off: its endpoint is a port nobody listens on."""
    attic = NodeIdentity.load_or_create(home / "attic-identity")
    info = PairingInfo("attic", b64(attic.public_key), b64(os.urandom(32)), tunnel_address(attic.public_key),
                       (f"127.0.0.1:{free_port()}",), agent_port=free_port())
    return TrustStore(home).add(info, os.urandom(32)).node_id


def test_once_json_without_a_server_says_how_to_start_it_and_lists_the_paired_peers(tmp_path: Path) -> None:
    node_id = paired_with_attic(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    result = hearth_here(tmp_path, "dash", "--once", "--json", "--url", url, "--wait", "0")
    assert result.code == 12, result.stderr
    assert "hearth serve" in result.stderr
    shot = json.loads(result.stdout)
    assert shot["status"] is None and shot["url"] == url
    assert shot["error"]["code"] == "serve_unreachable" and "hearth serve" in shot["error"]["message"]
    assert [(p["name"], p["node_id"], p["state"]) for p in shot["peers"]] == [("attic", node_id, "unreachable")]


def test_once_without_a_server_prints_the_peers_and_the_way_to_start_it(tmp_path: Path) -> None:
    paired_with_attic(tmp_path)
    result = hearth_here(tmp_path, "dash", "--once", "--url", f"http://127.0.0.1:{free_port()}", "--wait", "0")
    assert result.code == 12
    assert "attic" in result.stdout and "unreachable" in result.stdout
    assert "start one with `hearth serve`" in result.stderr


def test_the_dashboard_without_a_server_says_so_and_still_shows_the_paired_peer(tmp_path: Path) -> None:
    paired_with_attic(tmp_path)
    source = LiveSource(DashClient(f"http://127.0.0.1:{free_port()}"), load_settings(home=tmp_path), wait=0.0)

    async def go() -> tuple[str, str, str | None]:
        app = DashApp(source)
        async with app.run_test(size=(80, 24)) as pilot:
            await asyncio.wait_for(app.settled.wait(), 30)
            await pilot.pause()
            radii = app.query_one("#radii").render()
            title = app.query_one("#title").render()
            return str(title), str(radii), app.problem
    title, radii, problem = asyncio.run(go())
    assert "not connected" in title
    assert "not connected" in radii and "attic✗" in radii
    assert problem is not None and "hearth serve" in problem
