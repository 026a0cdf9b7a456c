"""`hearth pair`, `hearth unpair`, `hearth rendezvous`: the trusted radius."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from hearth.cli.common import err, out, say, settings, until_signal
from hearth.errors import InvalidRequest
from hearth.net.endpoint import join_host_port, option_endpoint
from hearth.ports import DEFAULT_NODE_PORT, DEFAULT_PAIR_PORT, DEFAULT_RENDEZVOUS_PORT


def pair(
    code: Annotated[str | None, typer.Argument(
        help="The code the other machine printed; without it, print a code and wait.", show_default=False)] = None,
    to: Annotated[str | None, typer.Option(help="The waiting machine's HOST:PORT, where mDNS cannot reach.")] = None,
    via: Annotated[str | None, typer.Option(
        help="Meet through a rendezvous HOST:PORT both machines reach (`hearth rendezvous`).")] = None,
    bind: Annotated[str | None, typer.Option(
        help="Address to wait on (default: this machine's LAN address).")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to wait on.")] = DEFAULT_PAIR_PORT,
    name: Annotated[str | None, typer.Option(
        help="Name the peer will know this machine by (default: the name `hearth node` last ran under with "
             "this HEARTH_HOME, else the host name).")] = None,
    node_port: Annotated[int, typer.Option(
        min=1, max=65535, help="This machine's `hearth node` port.")] = DEFAULT_NODE_PORT,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask to compare the verifier (scripts).")] = False,
    wait: Annotated[float, typer.Option(min=0.0, max=60.0, help="Seconds to look for the code's machine.")] = 5.0,
) -> None:
    """Pair with another machine by a short code, so it joins your trusted radius.

    One machine runs `hearth pair` and reads out the code; the other runs `hearth pair CODE`.
    Both show three words: they must match on both screens. SIGINT or SIGTERM stops the
    waiting (exit 130 or 143) and the code is gone with it."""
    from hearth.identity import NodeIdentity
    from hearth.pairing import flow
    from hearth.pairing.codes import parse_code
    from hearth.pairing.names import check_name, default_label

    config = settings()
    label = check_name(name or default_label(config.home))
    if to and via:
        raise InvalidRequest("--to and --via are two ways to reach the other machine; give one.")
    parsed = parse_code(code) if code is not None else None  # a wrong code is the first thing to hear of
    identity = NodeIdentity.load_or_create(config.home)
    meet_at = option_endpoint(via, "--via", DEFAULT_RENDEZVOUS_PORT, DEFAULT_RENDEZVOUS_PORT) if via else None
    if parsed is None:
        host = flow.Host(label, flow.host_address(bind, meet_at), port, node_port, meet_at)
        result = until_signal(flow.host(config, identity, host, _show), "hearth pair")
    else:
        target = option_endpoint(to, "--to", DEFAULT_PAIR_PORT, DEFAULT_PAIR_PORT) if to else None
        guest = flow.Guest(label, *parsed, node_port, target, meet_at, wait, bind)
        result = until_signal(flow.guest(config, identity, guest), "hearth pair")
    out.print(f"Verifier: [bold]{result.verifier}[/]  (the other screen must show the same three words)")
    if not yes and not typer.confirm("Do both screens show these words?", default=False, err=True):
        raise InvalidRequest("Not paired: the verifier was not confirmed.")
    peer = flow.keep(config, identity, result).info
    out.print(f"[green]✓[/] paired with {escape(peer.name)} ({peer.node_id}), tunnel address {peer.tunnel_address}")
    joined = flow.join_circle(config, identity)
    if joined.problem:
        err.print(f"[yellow]WireGuard:[/] {escape(joined.problem)}")
    if joined.wireguard:
        out.print(f"WireGuard {joined.wireguard} now has {joined.peers} peer(s).")
    else:
        out.print("Trusted pooling with this peer uses the sealed tunnel (no WireGuard here).")


def _show(notice: object) -> None:
    from hearth.pairing.flow import CodeReady, Waiting

    if isinstance(notice, CodeReady):
        out.print(f"Pairing code: [bold]{notice.code}[/]   (one use, expires in 5 minutes)")
        via = f" --via {notice.via}" if notice.via else ""
        out.print(f"On the other machine run: hearth pair {notice.code}{escape(via)}")
    elif isinstance(notice, Waiting):
        say(f"waiting on {join_host_port(notice.address, notice.port)}…")


def unpair(peer: Annotated[str, typer.Argument(help="The paired peer's name, host name or node id.")]) -> None:
    """Revoke a paired peer: its leases here end and its WireGuard peer goes, within a second."""
    from hearth.pairing.flow import unpair as forget

    gone = forget(settings(), peer)
    if gone.problem:
        err.print(f"[yellow]{escape(gone.problem)}[/]")
    out.print(f"Unpaired {escape(gone.peer.info.name)} ({gone.peer.node_id}).")


def rendezvous(
    bind: Annotated[str, typer.Option(help="Address both machines can reach (never 0.0.0.0).")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = DEFAULT_RENDEZVOUS_PORT,
) -> None:
    """Let two machines that cannot see each other pair through this one (it never sees the key).

    SIGTERM stops it with exit 0 (a service asked to stop); SIGINT with 130."""
    import signal

    from hearth.pairing.flow import rendezvous as run_rendezvous

    def ready(address: str, bound: int) -> None:
        say(f"hearth rendezvous on {join_host_port(address, bound)}")

    until_signal(run_rendezvous(bind, port, ready), "hearth rendezvous", clean_exit=(signal.SIGTERM,))
