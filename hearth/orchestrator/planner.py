"""Which machines hold which layers: pure functions over model facts and node capacities.

Per-token time through a split is the sum of each device's layers over its speed plus one round
trip per remote device, so the planner keeps layers local when they fit, uses as few remote
nodes as it can, fills faster devices first, and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hearth.errors import OutOfCapacity
from hearth.models.facts import ModelFacts
from hearth.units import human

HEADROOM = 0.1
"""Share of each node's free memory a plan leaves alone (compute buffers, the OS)."""


class DoesNotFit(OutOfCapacity):
    """The circle cannot hold the model; the message has the numbers."""

    http_status = 503
    code = "does_not_fit"
    exit_code = 6

    def __init__(self, message: str, *, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available


@dataclass(frozen=True)
class NodeCapacity:
    node_id: str
    name: str
    device: str
    free_bytes: int
    """Memory hearth may use there, after the node's own --max-memory cap."""
    local: bool = False
    """This machine: no network hop."""
    speed: float = 1.0
    """Relative decode speed of the device (layers per unit time); equal when unknown."""
    endpoint: str | None = None


@dataclass(frozen=True)
class Assignment:
    node: NodeCapacity
    layers: int
    bytes: int
    reason: str


@dataclass(frozen=True)
class Plan:
    model: str
    n_ctx: int
    needed_bytes: int
    assignments: tuple[Assignment, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    parallel: int = 1
    """Requests the engine runs at once; the KV cache is counted for each."""

    @property
    def remote(self) -> tuple[Assignment, ...]:
        return tuple(a for a in self.assignments if not a.node.local)

    @property
    def pooled(self) -> bool:
        return bool(self.remote)

    def tensor_split(self) -> tuple[float, ...]:
        """Shares in the engine's device order (remote servers first, this machine last)."""
        return tuple(float(a.layers) for a in self.assignments)

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model, "n_ctx": self.n_ctx, "parallel": self.parallel, "needed_bytes": self.needed_bytes,
            "pooled": self.pooled, "tensor_split": list(self.tensor_split()), "notes": list(self.notes),
            "assignments": [{"node_id": a.node.node_id, "name": a.node.name, "device": a.node.device,
                             "local": a.node.local, "endpoint": a.node.endpoint, "layers": a.layers,
                             "bytes": a.bytes, "reason": a.reason} for a in self.assignments],
        }


def layer_cost(facts: ModelFacts, n_ctx: int) -> list[int]:
    """Bytes each layer needs where it lives: its weights plus its share of the KV cache."""
    kv_per_layer = facts.kv_bytes(n_ctx) // max(1, facts.n_layers)
    return [b + kv_per_layer for b in facts.layer_bytes]


def plan(facts: ModelFacts, model: str, nodes: list[NodeCapacity], *, n_ctx: int, parallel: int = 1,
         headroom: float = HEADROOM, force_pool: bool = False) -> Plan:
    """Choose nodes and a layer split; raise DoesNotFit with the numbers when none exists.

    n_ctx: each sequence's context window; parallel: the engine's slots, each with its own KV cache.
    headroom: share of each node's free memory left alone (compute buffers, the OS).
    force_pool: place at least one layer on a remote node even if the model fits locally.
    """
    if not nodes:
        raise DoesNotFit("No machine is available to run the model.", needed=0, available=0)
    costs = layer_cost(facts, n_ctx * max(1, parallel))
    # The token embedding stays on the machine that runs the engine (llama.cpp keeps the input
    # layer on the CPU); the output head goes with the last layers, and the engine lists this
    # machine last, so both are counted here.
    fixed_local = facts.embedding_bytes + facts.output_bytes
    needed = sum(costs) + fixed_local

    def usable(n: NodeCapacity) -> int:
        return max(0, int(n.free_bytes * (1 - headroom)) - (fixed_local if n.local else 0))

    local = [n for n in nodes if n.local]
    if len(local) != 1:
        raise ValueError("a plan needs exactly one local node (the machine that runs the engine)")
    room_here = int(local[0].free_bytes * (1 - headroom))
    if room_here < fixed_local:
        raise DoesNotFit(
            f"This machine has {human(room_here)} usable but must hold {model}'s input embedding and "
            f"output head ({human(fixed_local)}); free memory here or raise --max-memory.",
            needed=fixed_local, available=room_here,
        )
    remote = sorted((n for n in nodes if not n.local), key=lambda n: (-n.speed, -n.free_bytes, n.node_id))
    total = sum(int(n.free_bytes * (1 - headroom)) for n in nodes)
    if total < needed:
        slots = f" for each of {parallel} parallel requests" if parallel > 1 else ""
        fewer = " or HEARTH_PARALLEL" if parallel > 1 else ""
        raise DoesNotFit(
            f"{model} needs {human(needed)} with a {n_ctx}-token context{slots}; the circle has "
            f"{human(total)} free after {headroom:.0%} headroom. Pair another machine, lower the "
            f"context{fewer}, or allow --radius public.",
            needed=needed, available=total,
        )

    # Fewest hops: local first, then the fewest (fastest, roomiest) remote nodes that suffice.
    # --pool takes every remote node, to exercise the split.
    chosen = list(local)
    capacity = sum(usable(n) for n in chosen)
    for n in remote:
        if capacity >= sum(costs) and not force_pool:
            break
        chosen.append(n)
        capacity += usable(n)
    notes = ["--pool asked for a split, but no remote node is available"] if force_pool and not remote else []

    # Fill faster devices first; at equal speed, this machine first (no round trip).
    order = sorted(chosen, key=lambda n: (-n.speed, not n.local, n.node_id))
    spread = force_pool and len(order) > 1
    layers = _even(order, costs, usable) if spread else None
    if spread and layers is None:
        notes.append(f"{UNEVEN}; filled the roomiest devices first")
    if layers is None:
        layers = _fill(order, costs, usable)
    if sum(layers.values()) < facts.n_layers:
        left = costs[sum(layers.values()):]
        raise DoesNotFit(
            f"{model} does not split onto the available machines: {len(left)} of {facts.n_layers} layers "
            f"({human(sum(left))}) are left over.",
            needed=needed, available=total,
        )

    # The engine lists remote devices first and this machine last; layer ranges follow that order.
    engine_order = [n for n in order if not n.local] + [n for n in order if n.local]
    assignments = []
    start = 0
    for n in engine_order:
        count = layers[n.node_id]
        if count == 0 and not n.local:
            continue
        weight = sum(costs[start:start + count])
        start += count
        if n.local:
            reason = "this machine: no network hop, holds the input embedding"
        elif n.speed > 1.0:
            reason = f"remote, {n.speed:g}x speed: filled before slower devices"
        elif spread:
            reason = "remote: --pool spreads the layers evenly"
        else:
            reason = f"remote, {human(usable(n))} usable: needed for the rest"
        assignments.append(Assignment(n, count, weight + (fixed_local if n.local else 0), reason))
    return Plan(model, n_ctx, needed, tuple(assignments), tuple(notes), max(1, parallel))


def _fill(order: list[NodeCapacity], costs: list[int], usable: Callable[[NodeCapacity], int]) -> dict[str, int]:
    """Contiguous layers, each device filled to its capacity before the next."""
    layers: dict[str, int] = {}
    i = 0
    for n in order:
        start, room, total = i, usable(n), 0
        while i < len(costs) and total + costs[i] <= room:
            total += costs[i]
            i += 1
        layers[n.node_id] = i - start
    return layers


def _even(order: list[NodeCapacity], costs: list[int], usable: Callable[[NodeCapacity], int]) -> dict[str, int] | None:
    """As equal a number of layers per device as capacity allows, or None."""
    k = len(order)
    counts = [len(costs) // k + (1 if j < len(costs) % k else 0) for j in range(k)]
    start = 0
    for n, count in zip(order, counts, strict=True):
        if sum(costs[start:start + count]) > usable(n):
            return None
        start += count
    return {n.node_id: c for n, c in zip(order, counts, strict=True)}


UNEVEN = "an even split does not fit"


def plan_slots(facts: ModelFacts, model: str, nodes: list[NodeCapacity], *, n_ctx: int, most: int,
               force_pool: bool = False) -> Plan:
    """A plan with the default slots: the most, from `most` down to 1, for which the model fits the
    circle (and, with force_pool, splits evenly): a split model's KV caches live on other people's
    machines, so the slots chosen from this machine's memory give way before the split does.
    Plan.parallel says how many; with one slot it is plan() itself (errors included)."""
    for parallel in range(max(1, most), 1, -1):
        try:
            result = plan(facts, model, nodes, n_ctx=n_ctx, parallel=parallel, force_pool=force_pool)
        except DoesNotFit:
            continue
        if not force_pool or (result.pooled and not any(n.startswith(UNEVEN) for n in result.notes)):
            return result
    return plan(facts, model, nodes, n_ctx=n_ctx, parallel=1, force_pool=force_pool)
