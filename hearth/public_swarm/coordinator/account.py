"""What `hearth credits` does: ask the coordinator for this identity's credits, or grant some
as the operator. The CLI parses and prints; these sign with the identity in HEARTH_HOME."""

from __future__ import annotations

import asyncio
import uuid

from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator.client import CoordinatorClient, coordinator_url
from hearth.public_swarm.coordinator.wire import Credits, Granted, parse_credits
from hearth.settings import Settings


def show_credits(settings: Settings, url: str | None) -> Credits:
    """This identity's balance, holds and recent entries (`url`, else HEARTH_COORDINATOR)."""
    base = coordinator_url(url or settings.coordinator)
    identity = NodeIdentity.load_or_create(settings.home)

    async def ask() -> Credits:
        async with CoordinatorClient(base, identity) as client:
            return await client.credits()

    return asyncio.run(ask())


def grant_credits(settings: Settings, url: str | None, account: str, amount: str, key: str | None) -> Granted:
    """Give `amount` credits (as typed: '10', '2.5') to `account`; works only when this HEARTH_HOME
    holds the coordinator's operator identity. A fresh key per call unless `key` is given (scripts
    pass one so that a retried command grants once)."""
    base = coordinator_url(url or settings.coordinator)
    micro = parse_credits(amount)
    identity = NodeIdentity.load_or_create(settings.home)

    async def ask() -> Granted:
        async with CoordinatorClient(base, identity) as client:
            return await client.grant(account, micro, key or f"cli-{uuid.uuid4().hex}")

    return asyncio.run(ask())
