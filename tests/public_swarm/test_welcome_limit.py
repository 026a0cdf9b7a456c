"""The welcome grant is bounded per client address: a script that makes a fresh identity for every
request would otherwise mint 10 credits each time and never touch the free allowance."""

from __future__ import annotations

from pathlib import Path

import httpx

from hearth.identity import NodeIdentity
from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.app import WELCOMES_PER_ADDRESS
from tests.public_swarm.jobs_http_kit import BASE, books


async def _credits(app: object, home: Path, address: str) -> int:
    identity = NodeIdentity.load_or_create(home)
    transport = httpx.ASGITransport(app, client=(address, 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE, auth=SignedAuth(identity)) as client:
        answer = await client.get("/v1/credits")
    assert answer.status_code == 200, answer.text
    return int(answer.json()["balance"])


def test_one_address_gets_a_few_welcomes_a_day_and_loopback_is_not_counted(tmp_path: Path) -> None:
    import asyncio

    with books(f"sqlite:///{tmp_path / 'c.db'}") as b:
        async def scenario() -> None:
            here = [await _credits(b.app, tmp_path / f"a{i}", "198.51.100.7") for i in range(WELCOMES_PER_ADDRESS + 2)]
            assert here == [10**7] * WELCOMES_PER_ADDRESS + [0, 0]  # the rest start with nothing
            # an identity already welcomed keeps its credits and costs its address nothing more
            assert await _credits(b.app, tmp_path / "a0", "198.51.100.7") == 10**7
            # IPv6 counts by /64: two addresses of one /64 share the count, another /64 does not
            v6 = [await _credits(b.app, tmp_path / f"v{i}", f"2001:db8:1:2::{i + 1}") for i in range(WELCOMES_PER_ADDRESS + 1)]
            assert v6 == [10**7] * WELCOMES_PER_ADDRESS + [0]
            assert await _credits(b.app, tmp_path / "w", "2001:db8:1:3::1") == 10**7
            # the coordinator's own machine (its operator, tests) is not counted
            local = [await _credits(b.app, tmp_path / f"l{i}", "127.0.0.1") for i in range(WELCOMES_PER_ADDRESS + 2)]
            assert local == [10**7] * (WELCOMES_PER_ADDRESS + 2)

        asyncio.run(scenario())
        assert b.ledger.audit() == []
