"""`hearth plan --radius public`: why the circle is not enough, and what the public route costs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hearth.identity import NodeIdentity
from hearth.models.store import ModelStore
from hearth.public_swarm.ledger.rules import format_credits
from hearth.public_swarm.requester import DEFAULT_MAX_TOKENS, PublicRequester
from hearth.settings import Settings


@dataclass(frozen=True)
class PublicRoute:
    """What the swarm would charge for `model`: its price, and the most a reply of `max_tokens`
    tokens costs beyond its prompt's tokens (each prompt token costs the same price)."""

    why: str
    """Why the circle cannot serve it (the planner's or the store's message)."""
    coordinator: str
    asked: str
    """What the swarm is asked for: sha256:<digest> (this machine's exact weights) or a name."""
    price: int
    """Credits per million tokens (= micro-credits per token)."""
    workers: int
    max_tokens: int
    cost: int
    """Micro-credits for max_tokens completion tokens."""
    ceiling: int | None

    @property
    def refused(self) -> bool:
        return self.ceiling is not None and self.price > self.ceiling

    def lines(self) -> list[str]:
        out = [f"The circle cannot serve it: {self.why}",
               f"Public route: {self.asked} at {self.coordinator}, {self.workers} worker(s) serve it, "
               f"{self.price:,} credits per million tokens.",
               f"A reply of {self.max_tokens} tokens (the default max_tokens) costs {format_credits(self.cost)} "
               f"credits, plus {self.price} micro-credits per prompt token."]
        if self.refused:
            out.append(f"Your ceiling is {self.ceiling:,} (--max-price / HEARTH_MAX_PRICE): the swarm would refuse it.")
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"cost_credits": self.cost, "refused_by_ceiling": self.refused}


async def public_route(settings: Settings, coordinator: str, asked: str, why: str,
                       max_tokens: int = DEFAULT_MAX_TOKENS) -> PublicRoute:
    """Ask the coordinator's `GET /v1/models` for `asked`'s price (ModelNotServed if none)."""
    identity = NodeIdentity.load_or_create(settings.home)
    async with PublicRequester(coordinator, identity, max_price=settings.max_price) as requester:
        served = await requester.model(asked)
    return PublicRoute(why, coordinator, asked, served.price, served.workers, max_tokens,
                       max_tokens * served.price, settings.max_price)


def asked_for(store: ModelStore, model: str) -> str:
    from hearth.escalation.pool import public_model_name

    return public_model_name(store, model)
