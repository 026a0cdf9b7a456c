"""`hearth dash`: the household cluster at a glance (a Textual dashboard), or one snapshot of it."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from hearth.cli.common import JsonOpt, err, out, settings
from hearth.errors import HearthError
from hearth.settings import Settings


def dash(
    url: Annotated[str | None, typer.Option(
        help="The `hearth serve` to watch (default: this machine's, at HEARTH_HOST:HEARTH_PORT).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit (no dashboard).")] = False,
    as_json: JsonOpt = False,
    wait: Annotated[float, typer.Option(min=0.0, max=30.0, help="Seconds to listen for household nodes.")] = 2.0,
) -> None:
    """Watch a running `hearth serve`: the radii, the nodes, the layer map, throughput, events and
    the public radius. With --once (and --json, for scripts) print one snapshot instead; with
    nothing running it says how to start it and still lists the circle's nodes and paired peers."""
    config = settings()
    target = url or default_url(config)
    key = config.api_key.get_secret_value() if config.api_key else None
    if once or as_json:
        shot, problem = asyncio.run(snapshot(config, target, key, wait))
        if as_json:
            out.print_json(json.dumps(shot))
        else:
            print_snapshot(shot)
        if problem is not None:
            raise problem
        return
    from hearth.tui.actions import ActionContext
    from hearth.tui.app import DashApp
    from hearth.tui.client import DashClient
    from hearth.tui.source import LiveSource

    DashApp(LiveSource(DashClient(target, api_key=key), config, wait),
            action_context=ActionContext(config, target, key)).run()


def default_url(config: Settings) -> str:
    from hearth.net.endpoint import join_host_port

    return f"http://{join_host_port(config.host, config.port)}"


async def snapshot(config: Settings, url: str, key: str | None,
                   wait: float) -> tuple[dict[str, Any], HearthError | None]:
    """The server's status (or why there is none), the circle as `hearth peers --json` shows it,
    and `nodes`: the node list as the dashboard shows it (each node's own agent read once)."""
    from hearth.node_api.status import ServeStatus
    from hearth.tui.client import DashClient
    from hearth.tui.nodewatch import read_once
    from hearth.tui.source import look_for_circle, node_client

    problem: HearthError | None = None
    status: ServeStatus | None = None
    async with DashClient(url, api_key=key) as client:
        try:
            status = await client.status()
        except HearthError as exc:
            problem = exc
    circle = await look_for_circle(config, wait)
    async with await asyncio.to_thread(node_client, config) as nodes:
        listed = await read_once(nodes, status, circle)
    error = {"code": problem.code, "message": problem.message} if problem else None
    return {"url": url, "status": status.model_dump(mode="json") if status else None, "error": error,
            **circle.raw, "nodes": [n.model_dump(mode="json") for n in listed]}, problem


def print_snapshot(shot: dict[str, Any]) -> None:
    status = shot["status"]
    if status is not None:
        model = status["model"] or "no model loaded"
        out.print(f"hearth serve {escape(shot['url'])}: [bold]{escape(model)}[/], radius {status['radius']}, "
                  f"{len(status['nodes'])} node(s), {int(status['busy'])} busy, {status['waiting']} waiting")
        samples = status["throughput"]["samples"]
        if samples:
            out.print(f"throughput {samples[-1]:.1f} tok/s")
    for peer in shot.get("peers", []):
        out.print(f"{escape(peer['name'])} ({peer['node_id']}) {peer['radius']} "
                  f"{peer.get('state') or peer.get('problem') or 'ready'}")
    if not shot.get("peers"):
        out.print("No nodes found and no peers paired.")
    for line in shot.get("problems", []):
        err.print(f"[yellow]skipped[/] {escape(line)}")
