"""`hearth plan`, `hearth node`, `hearth peers`: the household's pool of machines."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hearth.cli.common import (
    JsonOpt,
    MaxMemOpt,
    MaxPriceOpt,
    PeerOpt,
    PoolOpt,
    RadiusOpt,
    err,
    out,
    policy,
    public_settings,
    say,
    settings,
)
from hearth.errors import HearthError
from hearth.ports import DEFAULT_NODE_PORT
from hearth.radius import Radius
from hearth.settings import Settings
from hearth.units import human


def plan(
    model: Annotated[str, typer.Argument(help="Model alias or stored name.")],
    n_ctx: Annotated[int | None, typer.Option(
        "--n-ctx", min=64, help="Context to plan for (default: setting).")] = None,
    max_memory: MaxMemOpt = None,
    node: Annotated[list[str] | None, typer.Option(
        "--node", help="An imagined machine to plan with, as NAME=SIZE (to ask 'what if').")] = None,
    pool: PoolOpt = False,
    radius: RadiusOpt = None,
    peer: PeerOpt = None,
    wait: Annotated[float, typer.Option(min=0.0, max=30.0, help="Seconds to listen for household nodes.")] = 2.0,
    as_json: JsonOpt = False,
    max_price: MaxPriceOpt = None,
) -> None:
    """Show which machines would hold which layers of MODEL, and why.

    The household's nodes are found by mDNS (and --peer); --node adds imagined ones. With
    --radius public, a model the circle cannot serve shows what the public swarm would charge."""
    from hearth.orchestrator.survey import plan_model

    config = public_settings(radius, False, max_price)
    chosen = policy(config, config.radius, pool, peer, max_memory, public=True)
    def skipped(problem: str) -> None:
        err.print(f"[yellow]skipped[/] {escape(problem)}")

    public = config.radius == Radius.PUBLIC
    try:
        result = asyncio.run(plan_model(config, model, chosen, wait, node or [], n_ctx, skipped))
    except HearthError as exc:
        if not public or not _circle_cannot(exc):
            raise
        _plan_public(config, model, exc, as_json)
        return
    if public:
        err.print("note: the circle can serve it; --radius public would not use the public swarm.")
    name = result.model
    if as_json:
        out.print_json(json.dumps(result.to_json()))
        return
    slots = f"{result.parallel} request{'s' if result.parallel > 1 else ''} of {result.n_ctx} tokens at once"
    table = Table("node", "device", "layers", "memory", "reason",
                  title=f"{name}: needs {human(result.needed_bytes)} ({slots})")
    for a in result.assignments:
        table.add_row(a.node.name, a.node.device, str(a.layers), human(a.bytes), a.reason)
    out.print(table)
    for note in result.notes:
        out.print(f"note: {note}")


def _circle_cannot(exc: HearthError) -> bool:
    from hearth.escalation.pool import CIRCLE_CANNOT_SERVE

    return isinstance(exc, CIRCLE_CANNOT_SERVE)


def _plan_public(config: Settings, model: str, why: HearthError, as_json: bool) -> None:
    """`hearth plan --radius public` for a model the circle cannot serve: why, and the price."""
    from hearth.escalation.explain import asked_for, public_route
    from hearth.escalation.pool import coordinator_of
    from hearth.models.store import ModelStore

    coordinator = coordinator_of(config)
    asked = asked_for(ModelStore(config.models_dir), model)
    route = asyncio.run(public_route(config, coordinator, asked, why.message))
    if as_json:
        out.print_json(json.dumps(route.to_json()))
        return
    for line in route.lines():
        out.print(line, markup=False, highlight=False)


def node(
    bind: Annotated[str, typer.Option(help="This machine's address to serve on (never 0.0.0.0).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Control API port.")] = DEFAULT_NODE_PORT,
    name: Annotated[str | None, typer.Option(help="Name shown to the household (default: host name).")] = None,
    max_memory: Annotated[str | None, typer.Option(help="Most memory hearth may use here, e.g. 12G.")] = None,
    peer: Annotated[list[str] | None, typer.Option(help="A static peer HOST:PORT, where mDNS cannot reach.")] = None,
    admit: Annotated[str, typer.Option(
        help="Who may lease memory here: 'household' (anyone on this LAN) or 'trusted' (only peers paired "
             "with `hearth pair`, via WireGuard or the sealed tunnel; the LAN sees only discovery). "
             "'paired' is the old spelling of 'trusted'.")] = "household",
    cache_size: Annotated[str, typer.Option(
        help="Disk for lessees' RPC weight caches (one folder each, oldest evicted first); 0 turns it off.")] = "2G",
) -> None:
    """Run this machine's agent: advertise it and lend its memory to the household's models."""
    from hearth.rpc_pool.node import serve_node

    serve_node(settings(), bind, port, name, max_memory, peer or [], admit, cache_size, say=say)


def peers(
    as_json: JsonOpt = False,
    wait: Annotated[float, typer.Option(min=0.0, max=30.0, help="Seconds to listen for mDNS records.")] = 2.0,
    peer: Annotated[list[str] | None, typer.Option(help="A static peer HOST:PORT to ask as well.")] = None,
) -> None:
    """List the circle's nodes: the household's (found by mDNS or given) and paired peers,
    each proven by its key, with its radius (household / trusted) and state."""
    from hearth.orchestrator.survey import circle_report

    report = asyncio.run(circle_report(settings(), wait, peer or []))
    if as_json:
        out.print_json(json.dumps(report.to_json()))
        return
    table = Table("name", "node id", "address", "radius", "free", "rpc", "state")
    for p in report.found:
        state = ("full" if p.record.full else "ready") if p.usable else (p.problem or "unverified")
        table.add_row(escape(p.record.name), p.record.node_id, escape(str(p.agent)), p.radius,
                      human(p.record.free_bytes), str(p.record.rpc), state)
    for t in report.missing:
        table.add_row(escape(t.info.name), t.node_id, t.info.tunnel_address, Radius.TRUSTED, "-", "-", "unreachable")
    out.print(table if report.found or report.missing else
              "No peers found. Run `hearth node --bind ADDR` on the other machines, or pair one with `hearth pair`.")
    for problem in report.problems:
        err.print(f"[yellow]skipped[/] {escape(problem)}")
