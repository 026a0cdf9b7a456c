"""The coordinator as a service: a real `hearth coordinator` process and the real client.

Registration, the worker list, prices, credits with the welcome grant exactly once, operator
grants (and their refusal for anyone else), and the signature gate: unsigned, forged, stale and
replayed requests get 401 and change nothing. The credits test also runs on a real PostgreSQL 15.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.identity import NodeIdentity
from hearth.pairing.signed import Unsigned, sign
from hearth.public_swarm.coordinator.auth import NotOperator
from hearth.public_swarm.coordinator.client import CoordinatorClient
from hearth.public_swarm.coordinator.wire import Granted, Hardware, OfferedModel, WorkerRegistration
from hearth.public_swarm.ledger.rules import MICRO, Kind
from hearth.public_swarm.pricing import price_of_quant, price_table
from tests.public_swarm.coordinator_proc import Coordinator, coordinator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    with coordinator(tmp_path_factory.mktemp("coordinator"), None, "--welcome", "3") as c:
        yield c


def ident() -> NodeIdentity:
    from nacl.signing import SigningKey

    return NodeIdentity(SigningKey.generate())


def model(name: str, quant: str = "Q4_K_M", n_params: int = 7_600_000_000) -> OfferedModel:
    return OfferedModel(digest=hashlib.sha256(name.encode()).hexdigest(), name=name, n_params=n_params,
                        quantization=quant, n_ctx=4096, decode_tps=12.5)


def registration(*models: OfferedModel, name: str = "den") -> WorkerRegistration:
    return WorkerRegistration(name=name, models=list(models),
                              hardware=Hardware(cpu="Ryzen 7", cores=8, memory_bytes=32 << 30))


def test_a_worker_registers_is_listed_with_prices_and_refreshes(coord: Coordinator) -> None:
    worker, asker = ident(), ident()

    async def go() -> None:
        async with CoordinatorClient(coord.url, worker) as w, CoordinatorClient(coord.url, asker) as a:
            view = await w.register(registration(model("qwen2.5-7b"), model("smol", "Q8_0", 135_000_000)))
            assert view.node_id == worker.node_id and view.name == "den"
            listed = {x.node_id: x for x in (await a.workers()).data}
            mine = listed[worker.node_id]
            assert [m.name for m in mine.models] == ["qwen2.5-7b", "smol"]
            q = mine.models[0]
            assert q.credits_per_million_tokens == price_of_quant(7_600_000_000, "Q4_K_M").per_token
            assert q.digest == hashlib.sha256(b"qwen2.5-7b").hexdigest() and q.decode_tps == 12.5
            refreshed = await w.register(registration(model("only-this", "q4_0"), name="den2"))
            assert [m.name for m in refreshed.models] == ["only-this"] and refreshed.name == "den2"
            assert refreshed.models[0].quantization == "Q4_0"
            assert refreshed.registered_at == view.registered_at and refreshed.last_seen >= view.last_seen
            listed = {x.node_id: x for x in (await a.workers()).data}
            assert [m.name for m in listed[worker.node_id].models] == ["only-this"]

    asyncio.run(go())


def test_prices_need_no_signature_and_are_the_published_table(coord: Coordinator) -> None:
    answer = httpx.get(coord.url + "/v1/prices", timeout=10)
    assert answer.status_code == 200 and answer.json() == json.loads(json.dumps(price_table()))

    async def go() -> None:
        async with CoordinatorClient(coord.url, ident()) as c:
            assert (await c.prices())["data"] == answer.json()["data"]

    asyncio.run(go())


def credits_welcome_once(c: Coordinator, welcome: int) -> None:
    someone = ident()

    async def go() -> None:
        async with CoordinatorClient(c.url, someone) as client:
            first, again = await client.credits(), await client.credits()
            await asyncio.gather(*(client.credits() for _ in range(5)))
            final = await client.credits()
        for mine in (first, again, final):
            assert mine.account == someone.node_id and mine.balance == welcome and mine.held == 0
            assert [e.kind for e in mine.entries] == [Kind.WELCOME.value]

    asyncio.run(go())
    with c.ledger() as ledger:
        assert ledger.balance(someone.node_id) == welcome
        assert ledger.audit() == []


def test_credits_give_the_welcome_grant_exactly_once(coord: Coordinator) -> None:
    credits_welcome_once(coord, 3 * MICRO)


def test_credits_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    with coordinator(tmp_path / "pg", postgres_url) as c:
        credits_welcome_once(c, 10 * MICRO)
        granted = asyncio.run(_grant(c, c.operator, "someone-else", 5 * MICRO, "pg-grant-0001"))
        assert granted.balance == 5 * MICRO


async def _grant(c: Coordinator, who: NodeIdentity, account: str, amount: int, key: str) -> Granted:
    async with CoordinatorClient(c.url, who) as client:
        return await client.grant(account, amount, key)


def test_the_operator_grants_once_per_key_and_nobody_else_may(coord: Coordinator) -> None:
    receiver, stranger = ident(), ident()
    done = asyncio.run(_grant(coord, coord.operator, receiver.node_id, 7 * MICRO, "grant-test-0001"))
    assert done.account == receiver.node_id and done.amount == 7 * MICRO and done.balance == 7 * MICRO
    again = asyncio.run(_grant(coord, coord.operator, receiver.node_id, 7 * MICRO, "grant-test-0001"))
    assert again.balance == 7 * MICRO  # the same key: nothing more
    with pytest.raises(NotOperator):
        asyncio.run(_grant(coord, stranger, stranger.node_id, 1000 * MICRO, "grant-test-0002"))
    with coord.ledger() as ledger:
        assert ledger.balance(receiver.node_id) == 7 * MICRO
        assert ledger.balance(stranger.node_id) == 3 * MICRO  # its welcome, not the grant it asked for
        assert ledger.audit() == []

    async def mine() -> int:
        async with CoordinatorClient(coord.url, receiver) as client:
            return (await client.credits()).balance

    assert asyncio.run(mine()) == 10 * MICRO  # the grant, then the welcome on its first own request


def _raw(coord: Coordinator, headers: dict[str, str], body: bytes = b"", path: str = "/v1/credits",
         method: str = "GET") -> httpx.Response:
    return httpx.request(method, coord.url + path, headers=headers, content=body, timeout=10)


def test_unsigned_forged_stale_and_replayed_requests_are_refused(coord: Coordinator) -> None:
    someone = ident()
    with coord.ledger() as ledger:
        before = ledger.balances()
    body = json.dumps({"account": someone.node_id, "amount": 5, "key": "forged-key-01"}).encode()
    cases = {
        "unsigned": _raw(coord, {}),
        "unsigned grant": _raw(coord, {}, body, "/v1/grants", "POST"),
        # the operator's signature over another body: the hash does not match
        "forged body": _raw(coord, sign(coord.operator, "POST", "/v1/grants", b"{}"), body, "/v1/grants", "POST"),
        "another path": _raw(coord, sign(someone, "GET", "/v1/workers", b"")),
        "stale": _raw(coord, sign(someone, "GET", "/v1/credits", b"", now=time.time() - 600)),
        "garbage key": _raw(coord, {**sign(someone, "GET", "/v1/credits", b""), "x-hearth-key": "!!"}),
    }
    for what, answer in cases.items():
        assert answer.status_code == 401, what
        assert answer.json()["error"]["code"] == "unsigned_request", what
    headers = sign(someone, "GET", "/v1/credits", b"")
    assert _raw(coord, headers).status_code == 200
    replayed = _raw(coord, headers)
    assert replayed.status_code == 401 and "replayed" in replayed.json()["error"]["message"]
    with coord.ledger() as ledger:
        after = ledger.balances()
    # only the one good request wrote: someone's welcome
    assert {k: v for k, v in after.items() if k not in (someone.node_id, "operator")} == \
           {k: v for k, v in before.items() if k != "operator"}
    assert after[someone.node_id] == 3 * MICRO

    async def client_refused() -> None:
        bad = CoordinatorClient(coord.url, someone)
        bad._http.auth = None  # an unsigned client: the typed error
        async with bad:
            await bad.credits()

    with pytest.raises(Unsigned):
        asyncio.run(client_refused())
