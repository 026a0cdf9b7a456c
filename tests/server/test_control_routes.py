"""`hearth dash`'s control routes on the real app: radius, price ceiling, who may ask, bad bodies.

In-process over httpx's ASGI transport (the real app and pool, no engine started here); the model
load with the real store and model is in test_control_load.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.escalation.consent import remembered
from hearth.orchestrator.engines import EnginePool
from hearth.radius import Radius
from hearth.server.app import create_app
from hearth.server.control_routes import LOAD_PATH, MAX_PRICE_PATH, RADIUS_PATH
from hearth.settings import Settings, load_settings

COORDINATOR = "http://127.0.0.1:9"
Call = Callable[[str, Any], Awaitable[httpx.Response]]


def run_app(home: Path, check: Callable[[Call, EnginePool], Awaitable[None]], *, client: str = "127.0.0.1",
            key: str | None = None, **env: Any) -> Settings:
    config = load_settings(home=home, api_key=key, **env)
    pool = EnginePool(config)

    async def main() -> None:
        app = create_app(config, pool)
        transport = httpx.ASGITransport(app, client=(client, 40000))  # type: ignore[arg-type]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers) as c:
            async def call(path: str, body: Any) -> httpx.Response:
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                return await c.post(path, content=raw)

            await check(call, pool)
        await pool.close()

    asyncio.run(main())
    return config


def test_radius_changes_the_pool_and_the_settings(tmp_path: Path) -> None:
    async def check(call: Call, pool: EnginePool) -> None:
        for name in ("machine", "trusted", "household", "local"):
            r = await call(RADIUS_PATH, {"radius": name})
            assert r.status_code == 200, r.text
            want = Radius.MACHINE if name == "local" else Radius(name)
            assert r.json() == {"radius": want.value, "public": False, "coordinator": None}
            assert pool.policy.radius is want

    config = run_app(tmp_path, check)
    assert config.radius == "machine"


def test_public_needs_a_coordinator_then_consent(tmp_path: Path) -> None:
    async def no_coordinator(call: Call, pool: EnginePool) -> None:
        r = await call(RADIUS_PATH, {"radius": "public"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "no_coordinator", r.text
        assert "HEARTH_COORDINATOR" in r.json()["error"]["message"]

    run_app(tmp_path / "a", no_coordinator)

    async def consent(call: Call, pool: EnginePool) -> None:
        r = await call(RADIUS_PATH, {"radius": "public"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "public_not_consented", r.text
        assert "HEARTH_PUBLIC_OK" in r.json()["error"]["message"]
        assert pool.policy.radius is Radius.HOUSEHOLD  # nothing changed
        r = await call(RADIUS_PATH, {"radius": "public", "consent": True})
        assert r.status_code == 200 and r.json()["public"] is True, r.text
        assert pool.policy.radius is Radius.TRUSTED  # the circle first, as `serve --radius public`
        r = await call(RADIUS_PATH, {"radius": "machine"})
        assert r.json()["public"] is False and pool.policy.radius is Radius.MACHINE

    run_app(tmp_path / "b", consent, coordinator=COORDINATOR)
    assert remembered(tmp_path / "b") == {COORDINATOR}


def test_max_price_is_set_and_cleared(tmp_path: Path) -> None:
    seen: list[int | None] = []

    async def check(call: Call, pool: EnginePool) -> None:
        for value in (5000, None, 1):
            r = await call(MAX_PRICE_PATH, {"max_price": value})
            assert r.status_code == 200 and r.json() == {"max_price": value}, r.text
            seen.append(pool.settings.max_price)

    config = run_app(tmp_path, check)
    assert seen == [5000, None, 1] and config.max_price == 1


BAD = [
    (RADIUS_PATH, b"{", "not valid JSON"),
    (RADIUS_PATH, b"[]", "JSON object"),
    (RADIUS_PATH, {"radius": "galaxy"}, "choose 'machine', 'household', 'trusted', 'public'"),
    (RADIUS_PATH, {"radius": 3}, "radius"),
    (RADIUS_PATH, {"radius": "machine", "extra": 1}, "extra"),
    (RADIUS_PATH, {"radius": "x" * 10_000}, "radius"),
    (RADIUS_PATH, {"radius": "public", "consent": "yes"}, "consent"),
    (MAX_PRICE_PATH, {"max_price": -5}, "1 or more"),
    (MAX_PRICE_PATH, {"max_price": 0}, "1 or more"),
    (MAX_PRICE_PATH, {"max_price": "5000"}, "max_price"),
    (MAX_PRICE_PATH, {"max_price": True}, "max_price"),
    (MAX_PRICE_PATH, {"max_price": 10**19}, "1 or more"),
    (MAX_PRICE_PATH, {}, "max_price"),
    (LOAD_PATH, {"model": ""}, "model"),
    (LOAD_PATH, {"model": ["smollm2-135m"]}, "model"),
    (LOAD_PATH, b"\xff\xfe", "JSON"),
]


def test_malformed_bodies_get_400_naming_the_problem(tmp_path: Path) -> None:
    async def check(call: Call, pool: EnginePool) -> None:
        for path, body, words in BAD:
            r = await call(path, body)
            assert r.status_code == 400, (path, body, r.text)
            assert words in r.json()["error"]["message"], (path, body, r.text)
        assert pool.policy.radius is Radius.HOUSEHOLD and pool.settings.max_price is None

    run_app(tmp_path, check)


def test_an_unknown_model_is_404_saying_what_to_do(tmp_path: Path) -> None:
    async def check(call: Call, pool: EnginePool) -> None:
        for name in ("no-such-model", "../../etc/passwd", "Ünïcode?"):
            r = await call(LOAD_PATH, {"model": name})
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text
            assert "hearth models --catalogue" in r.json()["error"]["message"]
        assert pool.engine is None

    run_app(tmp_path, check)


def test_other_machines_need_the_api_key(tmp_path: Path) -> None:
    async def refused(call: Call, pool: EnginePool) -> None:
        r = await call(RADIUS_PATH, {"radius": "machine"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "control_not_local", r.text
        assert (await call(MAX_PRICE_PATH, {"max_price": 9})).status_code == 403
        assert (await call(LOAD_PATH, {"model": "smollm2-135m"})).status_code == 403
        assert pool.policy.radius is Radius.HOUSEHOLD and pool.settings.max_price is None

    run_app(tmp_path, refused, client="192.0.2.7")

    async def with_key(call: Call, pool: EnginePool) -> None:
        assert (await call(RADIUS_PATH, {"radius": "machine"})).status_code == 200

    run_app(tmp_path, with_key, client="192.0.2.7", key="k3y")

    config = load_settings(home=tmp_path, api_key="k3y")

    async def no_key() -> None:
        pool = EnginePool(config)
        app = create_app(config, pool)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1") as c:
            r = await c.post(RADIUS_PATH, json={"radius": "machine"})
            assert r.status_code == 401
        assert pool.policy.radius is Radius.HOUSEHOLD

    asyncio.run(no_key())


JSONS = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(body=st.dictionaries(st.sampled_from(["radius", "max_price", "consent", "x"]), JSONS, max_size=3))
def test_no_body_makes_a_500(tmp_path_factory: pytest.TempPathFactory, body: dict[str, Any]) -> None:
    home = tmp_path_factory.mktemp("fuzz")

    async def check(call: Call, pool: EnginePool) -> None:
        for path in (RADIUS_PATH, MAX_PRICE_PATH):
            r = await call(path, body)
            assert r.status_code in (200, 400, 403), r.text
            if r.status_code != 200:
                assert r.json()["error"]["message"]

    run_app(home, check)
