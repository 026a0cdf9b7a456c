"""The dashboard's d drain and s stop against a real `hearth node`, and p pair / u unpair with a
second HEARTH_HOME on 127.0.0.1 (the other side is the real `hearth pair CODE` command)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest

from hearth.net.endpoint import Endpoint
from hearth.settings import load_settings
from hearth.tui.actions import ActionContext
from hearth.tui.screens import ConfirmScreen, PairScreen
from tests.conftest import HEARTH, free_port, hearth_env
from tests.rpc_pool.nodes import rpc_server_pids, running_node
from tests.tui.actions_kit import ActionsApp, until

pytestmark = pytest.mark.slow


def test_drain_then_stop_this_machines_node(tmp_path: Path) -> None:
    with running_node(tmp_path, "--max-memory", "300M", name="attic") as node:
        lease = httpx.post(node.url + "/v1/leases", json={"bytes": 1}, timeout=60)
        assert lease.status_code == 201
        ctx = ActionContext(load_settings(home=tmp_path), node=Endpoint.parse(node.url.removeprefix("http://")))
        app = ActionsApp(ctx)

        async def main() -> None:
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("d")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10)
                await pilot.press("y")
                await until(pilot, lambda: app.said("Node attic is draining; 1 lease(s) still running."), 20)
                refused = httpx.post(node.url + "/v1/leases", json={"bytes": 1}, timeout=10)
                assert refused.status_code == 409 and "attic is draining" in refused.json()["error"]["message"]
                await pilot.press("s")
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10)
                await pilot.press("y")
                await until(pilot, lambda: app.said("Node attic is stopping"), 20)
                await pilot.press("d")  # nothing answers now: a notification
                await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10)
                await pilot.press("y")
                await until(pilot, lambda: app.said("hearth node", "error"), 20)

        asyncio.run(main())
        node.proc.wait(10)
        assert rpc_server_pids(tmp_path) == [] and "Traceback" not in node.log.read_text()
        assert not app.crashed


def test_pair_shows_code_and_words_then_unpair(tmp_path: Path) -> None:
    port = free_port()
    ctx = ActionContext(load_settings(home=tmp_path / "a", tunnel="sealed"), pair_bind="127.0.0.1", pair_port=port)
    app = ActionsApp(ctx)

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, PairScreen), 10)
            screen = app.screen
            assert isinstance(screen, PairScreen)
            await pilot.press("enter")  # no code typed: show one here
            await until(pilot, lambda: screen.code is not None, 20, "the code")
            guest = await asyncio.create_subprocess_exec(
                *HEARTH, "pair", str(screen.code), "--to", f"127.0.0.1:{port}", "--yes", "--name", "cellar",
                env=hearth_env(tmp_path / "b", HEARTH_TUNNEL="sealed"), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)
            await until(pilot, lambda: screen.result is not None, 60, "the verifier")
            shown = str(screen.query_one("#shown").render())
            assert screen.result is not None and f"Verifier: {screen.result.verifier}" in shown
            out, _ = await guest.communicate()
            assert guest.returncode == 0 and screen.result.verifier in out.decode(), out.decode()
            await pilot.press("y")
            await until(pilot, lambda: app.said("Paired with cellar"), 20)
            await pilot.press("u")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10)
            await pilot.press("n")  # not yet
            await pilot.pause(0.2)
            assert (tmp_path / "a" / "trust" / "peers.json").read_text().count("cellar") >= 1
            await pilot.press("u")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10)
            await pilot.press("y")
            await until(pilot, lambda: app.said("Unpaired cellar"), 20)
            await pilot.press("u")
            await until(pilot, lambda: app.said("No peer is paired", "warning"), 10)
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, PairScreen), 10)
            await pilot.press(*"not-a-code", "enter")
            await until(pilot, lambda: app.said("is not a pairing code", "error"), 10)

    asyncio.run(main())
    assert "cellar" not in (tmp_path / "a" / "trust" / "peers.json").read_text()
    assert not app.crashed


def test_pair_by_typing_the_other_machines_code(tmp_path: Path) -> None:
    port = free_port()
    ctx = ActionContext(load_settings(home=tmp_path / "a", tunnel="sealed"), pair_to=Endpoint("127.0.0.1", port))
    app = ActionsApp(ctx)

    async def main() -> None:
        host = await asyncio.create_subprocess_exec(
            *HEARTH, "pair", "--bind", "127.0.0.1", "--port", str(port), "--yes", "--name", "loft",
            env=hearth_env(tmp_path / "b", HEARTH_TUNNEL="sealed"), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        assert host.stdout is not None
        code = ""
        while not code:
            line = (await host.stdout.readline()).decode()
            assert line, "the host ended before printing a code"
            if "hearth pair " in line:
                code = line.split("hearth pair ", 1)[1].split()[0]
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, PairScreen), 10)
            screen = app.screen
            assert isinstance(screen, PairScreen)
            await pilot.press(*code, "enter")
            await until(pilot, lambda: screen.result is not None, 60, "the verifier")
            await pilot.press("y")
            await until(pilot, lambda: app.said("Paired with loft"), 20)
        rest, _ = await host.communicate()
        assert host.returncode == 0, rest.decode()

    asyncio.run(main())
    assert "loft" in (tmp_path / "a" / "trust" / "peers.json").read_text()
    assert not app.crashed
