"""What the planner is given: this machine's capacity, the circle's nodes, imagined machines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hearth.discovery.static import static_peers
from hearth.errors import InvalidRequest
from hearth.ggml.hello import RpcVersion
from hearth.ggml.process import local_rpc_version
from hearth.identity import NodeIdentity
from hearth.models.facts import cached_facts
from hearth.models.pull import resolve
from hearth.models.store import ModelStore
from hearth.orchestrator.peers import Peer, discover
from hearth.orchestrator.planner import NodeCapacity, Plan, plan, plan_slots
from hearth.orchestrator.policy import PoolPolicy
from hearth.orchestrator.slots_rules import slots_for
from hearth.pairing import circle
from hearth.pairing.trust import TrustedPeer, TrustStore
from hearth.radius import Radius
from hearth.settings import Settings
from hearth.units import parse_size


def local_capacity(max_memory: int | None = None) -> NodeCapacity:
    """This machine's CPU device, capped at what hearth may use of it."""
    from hearth.ggml.native import cpu_device, describe

    here = describe(cpu_device())
    free = min(here.free, max_memory) if max_memory else here.free
    return NodeCapacity("local", "this machine", here.name, free, local=True)


def peer_capacity(peer: Peer) -> NodeCapacity:
    r = peer.record
    return NodeCapacity(r.node_id, r.name, r.devices[0].name, r.free_bytes, endpoint=peer.base_url)


def imagined_node(spec: str) -> NodeCapacity:
    """`--node NAME=SIZE`: a machine to plan with that does not exist (to ask 'what if')."""
    label, sep, size = spec.partition("=")
    if not sep or not label.strip():
        raise InvalidRequest(f"--node {spec!r}: write it as NAME=SIZE, e.g. den=16G.")
    return NodeCapacity(label.strip(), label.strip(), "CPU", parse_size(size))


Tunnel = Callable[[NodeIdentity, list[TrustedPeer]], bool]
"""Whether paired peers are reached through WireGuard (the pool brings it up; `hearth peers` only looks)."""


def _interface_up(settings: Settings) -> Tunnel:
    def up(identity: NodeIdentity, _: list[TrustedPeer]) -> bool:
        return settings.tunnel != "sealed" and circle.interface(settings, identity).exists()
    return up


async def survey_circle(settings: Settings, trusted: bool, wait: float, statics: list[str], *,
                        rpc: RpcVersion | None = None, tunnel: Tunnel | None = None) -> tuple[list[Peer], list[str]]:
    """The circle's nodes as this machine sees them now, with a line per node that was skipped.
    Paired peers are reached through WireGuard when `tunnel` says so (default: when its interface
    is already up)."""
    identity = NodeIdentity.load_or_create(settings.home)
    trust = TrustStore(settings.home) if trusted else None
    paired = trust.all() if trust is not None else []
    tunnel = tunnel or _interface_up(settings)
    via_tunnel = bool(paired) and await asyncio.to_thread(tunnel, identity, paired)
    version = rpc if rpc is not None else await asyncio.to_thread(local_rpc_version)
    return await discover(version, wait=wait, static=statics, identity=identity, trust=trust, via_tunnel=via_tunnel)


async def plan_inputs(settings: Settings, policy: PoolPolicy, wait: float,
                      imagined: list[str]) -> tuple[list[NodeCapacity], list[str]]:
    """The nodes `hearth plan` plans with: this machine, the usable nodes of the policy's radius,
    then the imagined ones; and the problems of nodes that were skipped."""
    extra = [imagined_node(spec) for spec in imagined]  # a typo is reported before any waiting
    nodes = [await asyncio.to_thread(local_capacity, policy.max_memory)]
    problems: list[str] = []
    trusted = policy.radius is Radius.TRUSTED
    if policy.radius is not Radius.MACHINE and (wait > 0 or policy.static_peers or trusted):
        found, problems = await survey_circle(settings, trusted, wait, list(policy.static_peers))
        nodes += [peer_capacity(p) for p in found if p.usable]
    return nodes + extra, problems


async def plan_model(settings: Settings, model: str, policy: PoolPolicy, wait: float, imagined: list[str],
                     n_ctx: int | None, skipped: Callable[[str], None]) -> Plan:
    """`hearth plan`: which machines would hold which layers of `model`. Each node left out is told
    to `skipped` before planning, so it is seen even when the model does not fit."""
    store = ModelStore(settings.models_dir)
    name, _ = await asyncio.to_thread(resolve, store, model)
    facts = await asyncio.to_thread(cached_facts, store, name)
    nodes, problems = await plan_inputs(settings, policy, wait, imagined)
    for problem in problems:
        skipped(problem)
    n_ctx = n_ctx or settings.n_ctx
    here = next((n.free_bytes for n in nodes if n.local), 0)
    parallel = slots_for(facts, n_ctx, here, settings.parallel)
    if settings.parallel is None:  # the default slots give way to the split, as the pool plans it
        return plan_slots(facts, name, nodes, n_ctx=n_ctx, most=parallel, force_pool=policy.force)
    return plan(facts, name, nodes, n_ctx=n_ctx, parallel=parallel, force_pool=policy.force)


@dataclass(frozen=True)
class CircleReport:
    """`hearth peers`: the nodes that answered, the paired peers that did not, and why some were skipped."""

    found: list[Peer]
    missing: list[TrustedPeer]
    problems: list[str]

    def to_json(self) -> dict[str, Any]:
        unreachable = [{**t.public(), "radius": Radius.TRUSTED.value, "state": "unreachable"} for t in self.missing]
        return {"peers": [p.to_json() for p in self.found] + unreachable, "problems": self.problems}


async def circle_report(settings: Settings, wait: float, peers: list[str]) -> CircleReport:
    statics = static_peers(settings.home, peers)
    paired = TrustStore(settings.home).all()
    found, problems = await survey_circle(settings, True, wait, statics)
    answered = {p.record.node_id for p in found}
    return CircleReport(found, [t for t in paired if t.node_id not in answered], problems)
