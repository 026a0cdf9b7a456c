"""Who may take a lease on this node: pure rules over the leases it holds (no I/O).

A lease costs at least MIN_LEASE_BYTES, and what its server really holds when that is more: a
lease of 0 bytes would otherwise take a slot while the node still advertises all its memory
free, and a server may map a bounded slack beyond its lease (compute buffers; process.py).
One lessee may hold at most half the slots (rounded down, at least one), even while it is
alone, so that a second lessee always finds a slot unless the node's memory is gone. A node
with no slot, or less than a minimum lease of memory left, says it is full.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

MIB = 1024 * 1024
MIN_LEASE_BYTES = 16 * MIB


class Held(Protocol):
    @property
    def holder(self) -> str: ...
    @property
    def cost(self) -> int:
        """Its size, or what its server really holds if that is more."""


@dataclass(frozen=True)
class LeasePolicy:
    budget: int
    """--max-memory, or the free memory of the node's devices."""
    max_leases: int = 4
    min_bytes: int = MIN_LEASE_BYTES

    @property
    def per_holder(self) -> int:
        return max(1, self.max_leases // 2)

    def charge(self, want: int) -> int:
        """What a lease asking for `want` bytes counts against the budget, and may allocate."""
        return max(want, self.min_bytes)

    def left(self, leases: Iterable[Held]) -> int:
        return max(0, self.budget - sum(lease.cost for lease in leases))

    def full(self, leases: Iterable[Held]) -> bool:
        """No lease of the minimum size could be granted to a newcomer."""
        held = list(leases)
        return len(held) >= self.max_leases or self.left(held) < self.min_bytes

    def refusal(self, leases: Iterable[Held], holder: str, charged: int) -> str | None:
        """Why a lease of `charged` bytes for `holder` is refused, or None to grant it."""
        held = list(leases)
        if len(held) >= self.max_leases:
            return f"This node already serves {len(held)} leases, its limit."
        mine = sum(1 for lease in held if lease.holder == holder)
        if mine >= self.per_holder:
            return (f"You already hold {mine} of this node's {self.max_leases} lease slots, the most one "
                    "lessee may hold; release one first.")
        left = self.left(held)
        if charged > left:
            return (f"This node has {left} bytes left of its --max-memory budget; the lease asks for "
                    f"{charged} (at least {self.min_bytes}).")
        return None
