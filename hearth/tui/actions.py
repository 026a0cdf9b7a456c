"""What the dashboard's actions do, without Textual: the same functions the CLI calls.

Pairing goes through hearth.pairing.flow exactly as `hearth pair` / `hearth unpair` do; the
server's radius, price ceiling and model through its control routes (control_client.py); a
node's drain and stop through the node control API's client, signed with this machine's identity
(a node takes them only from its own machine). Each function raises HearthError on failure; the
screens turn it into a notification (commands.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from hearth.errors import HearthError, InvalidRequest
from hearth.identity import NodeIdentity
from hearth.models.catalogue import CATALOGUE
from hearth.models.store import ModelStore
from hearth.net.endpoint import Endpoint
from hearth.node_api.client import NodeClient
from hearth.node_api.status import ServeStatus
from hearth.node_api.wire import ControlAnswer
from hearth.pairing import flow
from hearth.pairing.codes import parse_code
from hearth.pairing.names import check_name, default_label
from hearth.pairing.transport import Paired
from hearth.pairing.trust import TrustStore
from hearth.ports import DEFAULT_NODE_PORT, DEFAULT_PAIR_PORT, DEFAULT_SERVE_PORT
from hearth.radius import AVAILABLE
from hearth.settings import Settings, load_settings
from hearth.tui.client import DashClient
from hearth.tui.control_client import ControlClient, LoadProgress

MAX_CEILING = 10**18


@dataclass
class ActionContext:
    """Where the actions reach: the server, this machine's node, this machine's data folder."""

    settings: Settings
    url: str = f"http://127.0.0.1:{DEFAULT_SERVE_PORT}"
    api_key: str | None = None
    node: Endpoint = Endpoint("127.0.0.1", DEFAULT_NODE_PORT)
    """This machine's `hearth node` (drain and stop are taken only from its own machine)."""
    pair_bind: str | None = None
    """Where `pair` waits (default: this machine's LAN address, as `hearth pair`)."""
    pair_port: int = DEFAULT_PAIR_PORT
    pair_to: Endpoint | None = None
    """Where a code's machine waits, where mDNS cannot find it (`hearth pair CODE --to`)."""

    @classmethod
    def from_env(cls, url: str | None = None) -> ActionContext:
        try:
            config = load_settings()
        except ValidationError as exc:
            raise InvalidRequest(f"A HEARTH_ setting is invalid: {exc.errors()[0]['msg']} "
                                 f"({'.'.join(str(x) for x in exc.errors()[0]['loc'])}).") from exc
        key = config.api_key.get_secret_value() if config.api_key is not None else None
        return cls(config, url or cls.url, key)

    def control(self) -> ControlClient:
        return ControlClient(self.url, api_key=self.api_key)


# -- pairing ------------------------------------------------------------------------------------
async def pair_host(ctx: ActionContext, on_code: Callable[[flow.CodeReady], None]) -> Paired:
    """Wait with a fresh code (shown through `on_code`) until the other machine joins; the
    result carries the verifier words both people compare before `keep_pair`."""
    config = ctx.settings
    label = check_name(default_label(config.home))
    identity = await asyncio.to_thread(NodeIdentity.load_or_create, config.home)
    address = await asyncio.to_thread(flow.host_address, ctx.pair_bind, None)
    host = flow.Host(label, address, ctx.pair_port, DEFAULT_NODE_PORT)

    def notify(notice: flow.Notice) -> None:
        if isinstance(notice, flow.CodeReady):
            on_code(notice)

    return await flow.host(config, identity, host, notify)


async def pair_guest(ctx: ActionContext, code: str) -> Paired:
    """Join the machine that shows `code` (found by mDNS, or at `ctx.pair_to`)."""
    config = ctx.settings
    nameplate, secret = parse_code(code)
    identity = await asyncio.to_thread(NodeIdentity.load_or_create, config.home)
    guest = flow.Guest(check_name(default_label(config.home)), nameplate, secret, DEFAULT_NODE_PORT,
                       ctx.pair_to, None, 5.0, ctx.pair_bind)
    return await flow.guest(config, identity, guest)


@dataclass(frozen=True)
class PairDone:
    name: str
    node_id: str
    circle: flow.Circle


async def keep_pair(ctx: ActionContext, result: Paired) -> PairDone:
    """After both screens showed the same words: store the peer and bring the circle up."""
    config = ctx.settings
    identity = await asyncio.to_thread(NodeIdentity.load_or_create, config.home)
    peer = await asyncio.to_thread(flow.keep, config, identity, result)
    joined = await asyncio.to_thread(flow.join_circle, config, identity)
    return PairDone(peer.info.name, peer.node_id, joined)


def paired_names(ctx: ActionContext) -> list[str]:
    """The paired peers' names, for choosing whom to unpair."""
    return [p.info.name for p in TrustStore(ctx.settings.home).all()]


async def unpair(ctx: ActionContext, name_or_id: str) -> flow.Unpaired:
    """`hearth unpair NAME`: its leases here end and its WireGuard peer goes."""
    return await asyncio.to_thread(flow.unpair, ctx.settings, name_or_id)


# -- the server --------------------------------------------------------------------------------
RADII = tuple(r.value for r in AVAILABLE)


async def server_coordinator(ctx: ActionContext) -> str:
    """The coordinator the consent question names, read now from the server's status."""
    try:
        async with DashClient(ctx.url, api_key=ctx.api_key) as client:
            status: ServeStatus | None = await client.status()
    except HearthError:
        status = None
    return consent_coordinator(status)


def consent_coordinator(status: ServeStatus | None) -> str:
    """Whom the consent question names: the coordinator the server escalates to, as its status says
    (the dashboard's own HEARTH_COORDINATOR may be another, or none)."""
    if status is not None and status.public.coordinator:
        return status.public.coordinator
    return "the coordinator the server is set to (HEARTH_COORDINATOR where `hearth serve` runs)"


async def set_radius(ctx: ActionContext, radius: str, *, consent: bool = False) -> str:
    async with ctx.control() as c:
        return await c.radius(radius, consent=consent)


def parse_price(text: str) -> int | None:
    """A price ceiling as typed in the dashboard: whole credits per million tokens; empty: none."""
    clean = text.strip().replace("_", "").replace(",", "")
    if not clean:
        return None
    if not (clean.isascii() and clean.isdigit() and len(clean) <= 18) or not 1 <= int(clean) <= MAX_CEILING:
        raise InvalidRequest(f"The price ceiling is whole credits per million tokens, 1 or more, not {text!r} "
                             "(leave it empty for no ceiling).")
    return int(clean)


async def set_max_price(ctx: ActionContext, ceiling: int | None) -> int | None:
    async with ctx.control() as c:
        return await c.max_price(ceiling)


@dataclass(frozen=True)
class ModelChoice:
    name: str
    stored: bool
    description: str


def model_choices(ctx: ActionContext) -> list[ModelChoice]:
    """Stored models first, then what the catalogue can pull."""
    stored = ModelStore(ctx.settings.models_dir).all()
    names = {m.name for m in stored}
    found = [ModelChoice(m.name, True, f"stored, {m.size / 1e6:.0f} MB") for m in stored]
    return found + [ModelChoice(e.alias, False, f"pull: {e.description}") for e in CATALOGUE.values()
                    if e.alias not in names]


async def load_model(ctx: ActionContext, model: str, on_progress: Callable[[LoadProgress], None]) -> str:
    async with ctx.control() as c:
        return await c.load(model, on_progress)


# -- this machine's node -----------------------------------------------------------------------
async def _node(ctx: ActionContext) -> NodeClient:
    identity = await asyncio.to_thread(NodeIdentity.load_or_create, ctx.settings.home)
    return NodeClient(identity)


async def drain_node(ctx: ActionContext, draining: bool = True) -> ControlAnswer:
    async with await _node(ctx) as nodes:
        return await nodes.drain(ctx.node, draining)


async def stop_node(ctx: ActionContext) -> ControlAnswer:
    async with await _node(ctx) as nodes:
        return await nodes.stop(ctx.node)
