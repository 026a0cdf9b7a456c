"""Replay of signed requests across coordinator processes: the nonce store is the database's
(coordinator.nonces, migration c0005), so a request admitted at one coordinator is refused at
another on the same PostgreSQL, and the store stays bounded."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from nacl.signing import SigningKey
from sqlalchemy import select

from hearth.identity import NodeIdentity
from hearth.pairing.signed import MemoryNonces, Verifier, sign
from hearth.public_swarm.coordinator import nonces as N
from hearth.public_swarm.coordinator.app import create_coordinator_app
from hearth.public_swarm.coordinator.auth import any_identity
from hearth.public_swarm.coordinator.workers import WorkerStore, upgrade
from hearth.public_swarm.ledger.db import Ledger
from tests.public_swarm.jobs_kit import Clock


def opened(url: str) -> tuple[Ledger, httpx.AsyncClient]:
    ledger = Ledger.open(url, pool_size=2)
    upgrade(ledger.engine)
    app = create_coordinator_app(ledger, WorkerStore(ledger.engine), "a" * 16)
    return ledger, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://coordinator")


@pytest.mark.slow
def test_a_signed_request_replayed_at_a_second_coordinator_is_refused(postgres_url: str) -> None:
    asyncio.run(replayed_at_the_second(postgres_url))


async def replayed_at_the_second(postgres_url: str) -> None:
    me = NodeIdentity(SigningKey(bytes([9]) * 32))
    (one_ledger, one), (two_ledger, two) = opened(postgres_url), opened(postgres_url)
    try:
        captured = sign(me, "GET", "/v1/credits", b"")
        first = await one.get("/v1/credits", headers=captured)
        assert first.status_code == 200, first.text
        replayed = await two.get("/v1/credits", headers=captured)
        assert replayed.status_code == 401 and "replayed" in replayed.json()["error"]["message"]
        again = await one.get("/v1/credits", headers=captured)  # and at the first one, as before
        assert again.status_code == 401
        fresh = await two.get("/v1/credits", headers=sign(me, "GET", "/v1/credits", b""))
        assert fresh.status_code == 200 and fresh.json()["account"] == me.node_id
    finally:
        await one.aclose()
        await two.aclose()
        one_ledger.close()
        two_ledger.close()


def test_the_store_forgets_nonces_past_their_window(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url, pool_size=1)
    try:
        upgrade(ledger.engine)
        ticks = Clock(0.0)
        store = N.DbNonces(ledger.engine, clock=ticks)
        verifier = Verifier(any_identity, window=30.0, nonces=store)
        me = NodeIdentity(SigningKey(bytes([3]) * 32))
        now = time.time()
        for i in range(20):
            verifier.verify("GET", "/x", sign(me, "GET", "/x", b"", now=now + i), b"", now=now + i)
        assert store.count() == 20
        ticks.now += N.PRUNE_S
        late = now + 200  # all the earlier ones are past two windows now
        verifier.verify("GET", "/x", sign(me, "GET", "/x", b"", now=late), b"", now=late)
        assert store.count() == 1
        with ledger.engine.connect() as conn:
            assert [r.expires_at for r in conn.execute(select(N.nonces))] == [late + 60]
        assert not store.remember("n" * 65, late + 60, late)  # never stored, never a 500
    finally:
        ledger.close()


def test_the_memory_store_still_refuses_a_replay_in_one_process() -> None:
    store = MemoryNonces()
    assert store.remember("abc", 10.0, 0.0) and not store.remember("abc", 10.0, 5.0)
    assert store.remember("abc", 30.0, 11.0)  # forgotten once past its time


def test_the_migration_builds_the_nonce_table_the_code_uses(ledger_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from hearth.public_swarm.coordinator.tables import metadata

    ledger = Ledger.open(ledger_url, pool_size=1)
    try:
        upgrade(ledger.engine)
        with ledger.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert [d for d in diff if "coordinator_nonces" in repr(d) or "ix_coordinator_jobs_hold" in repr(d)] == []
    finally:
        ledger.close()
