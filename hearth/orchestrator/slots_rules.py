"""How many requests an engine serves at once, and who gets a slot when one frees: pure rules.

The engine pool (engines.py) keeps the waiting requests and the slots in use; these functions
decide, without I/O, so that tests drive them directly.

- `choose_parallel`: the default for HEARTH_PARALLEL. Each slot keeps its own KV cache (n_ctx
  tokens), so the slots must fit in what is left of memory after the weights (of the memory
  hearth may use here: free memory or --max-memory, less the planner's headroom). Half of that
  is given to slots (the rest stays for compute buffers, the OS and whatever else runs there),
  and at most `cap` slots: on a CPU more sequences than that add latency for little throughput.
- `next_turn`: the waiting request that gets the next slot. The one whose client holds the
  fewest slots now, earliest first at a tie: one client cannot take every slot while others
  wait. A request for another model than the one running waits until the running ones end
  (streams are never killed to switch models), and then nobody overtakes it; a request for the
  whole engine (load, unload) waits until nothing runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hearth.models.facts import ModelFacts
from hearth.orchestrator.planner import HEADROOM

MAX_PARALLEL = 64
"""The most slots HEARTH_PARALLEL may ask for."""
DEFAULT_CAP = 4
"""The most slots chosen when HEARTH_PARALLEL is unset."""

Client = str | None
"""Who sent a request: the server's name for the caller (a hash of its API key, its address);
None is every anonymous caller together."""


def choose_parallel(kv_bytes_per_slot: int, free_bytes: int, cap: int = DEFAULT_CAP) -> int:
    """As many slots (1..cap) as fit in half of `free_bytes`, the memory left after the weights."""
    cap = max(1, min(cap, MAX_PARALLEL))
    if kv_bytes_per_slot <= 0:
        return cap
    fit = max(0, free_bytes) // 2 // kv_bytes_per_slot
    return max(1, min(cap, fit))


def slots_for(facts: ModelFacts, n_ctx: int, free_bytes: int, asked: int | None) -> int:
    """The engine's slots for a model: `asked` (HEARTH_PARALLEL) if set, else choose_parallel with
    each slot's KV cache (n_ctx tokens, capped by the model's own context) and what this machine's
    `free_bytes` leave after the planner's headroom and the model's file. A model that fits here
    with one slot therefore still fits with the slots chosen."""
    if asked is not None:
        return asked
    window = min(n_ctx, facts.context_length) if facts.context_length > 0 else n_ctx
    usable = int(free_bytes * (1 - HEADROOM))
    return choose_parallel(facts.kv_bytes(window), usable - facts.file_bytes)


@dataclass(frozen=True)
class Waiter:
    """A request waiting for a slot, in arrival order (`seq`)."""

    seq: int
    client: Client
    model: str | None
    """The model it runs; None: it needs the whole engine (a load, an unload)."""

    @property
    def whole(self) -> bool:
        return self.model is None


@dataclass(frozen=True)
class Running:
    """What holds the engine now."""

    held: Mapping[Client, int]
    """Slots each client holds (clients holding none are absent)."""
    model: str | None = None
    """The model the running requests use (meaningless when none run)."""
    slots: int = 1
    """How many requests of that model may run at once (the loaded engine's parallel)."""
    whole: bool = False
    """A load or unload holds the whole engine."""

    @property
    def active(self) -> int:
        return sum(self.held.values())


def fair_order(waiters: Sequence[Waiter], held: Mapping[Client, int]) -> list[Waiter]:
    """Waiters in the order they are offered a slot: fewest slots held by their client, then
    arrival. A request for the whole engine counts as a client holding none."""
    return sorted(waiters, key=lambda w: (0 if w.whole else held.get(w.client, 0), w.seq))


def can_start(waiter: Waiter, now: Running) -> bool:
    """Whether `waiter` may start at once, given what runs."""
    if now.whole:
        return False
    if now.active == 0:
        return True
    return not waiter.whole and waiter.model == now.model and now.active < now.slots


def next_turn(waiters: Sequence[Waiter], now: Running) -> Waiter | None:
    """The waiter to start now, or None: the first in fair order, if it can start; if it cannot
    (another model, the whole engine, no slot free), nobody overtakes it."""
    if not waiters:
        return None
    first = fair_order(waiters, now.held)[0]
    return first if can_start(first, now) else None
