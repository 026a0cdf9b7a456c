"""Fuzzing the requester routes (hypothesis): any body, any ceiling header, to chat/completions and
completions: always a clear 4xx in hearth's error shape, never a 500, and nothing written (ledger
and job queue unchanged). Requests are unsigned on a coordinator with no free allowance, so even a
well-formed one ends in 401 before a write; the body is parsed and checked first."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.public_swarm.coordinator.app import create_coordinator_app
from hearth.public_swarm.coordinator.dispatch import Dispatcher
from hearth.public_swarm.coordinator.jobs import JobQueue
from hearth.public_swarm.coordinator.ratelimit_rules import GENEROUS
from hearth.public_swarm.coordinator.stats import SwarmStats
from hearth.public_swarm.coordinator.workers import WorkerStore, upgrade
from hearth.public_swarm.ledger.db import Ledger
from tests.public_swarm.dispatch_kit import MODEL, links_with
from tests.public_swarm.jobs_kit import node, snapshot


@pytest.fixture(scope="module")
def app_books(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Ledger, JobQueue]]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'c.db'}"
    ledger = Ledger.open(url)
    upgrade(ledger.engine)
    queue = JobQueue(ledger.engine)
    links = links_with((node(1), (MODEL,)))
    dispatcher = Dispatcher(ledger, queue, links, stats=SwarmStats())
    app = create_coordinator_app(ledger, WorkerStore(ledger.engine), node(9), links, dispatcher,
                                 limits=GENEROUS)  # many requests from one address: limits are tested elsewhere
    yield app, ledger, queue
    ledger.close()


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)
FIELDS = ["model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
          "stop", "stream", "stream_options", "n"]
BASE = {"model": MODEL.name, "messages": [{"role": "user", "content": "hi"}], "prompt": "hi", "max_tokens": 8}
junk = (st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=30) | st.booleans() | st.none() | json_values
        | st.just("\ud800") | st.just("x" * 100_000) | st.just(2**40) | st.just([{"role": "user"}] * 600))


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return json.dumps(draw(json_values)).encode()
    body = dict(BASE)
    for field in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3)):
        if draw(st.booleans()):
            body.pop(field, None)
        else:
            body[field] = draw(junk)
    return json.dumps(body).encode("utf-8", "surrogatepass")


ceilings = st.none() | st.sampled_from(["", "0", "-5", "1", "1e9", "abc", "9" * 40, " 100 ", "5000"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(body=bodies(), path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]), ceiling=ceilings)
def test_routes_answer_4xx_and_write_nothing(app_books: tuple[Any, Ledger, JobQueue], body: bytes, path: str,
                                              ceiling: str | None) -> None:
    app, ledger, queue = app_books
    before = (ledger.balances(), snapshot(queue))
    headers = {"content-type": "application/json", **({"x-hearth-max-price": ceiling} if ceiling is not None else {})}

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            return await c.post(path, content=body, headers=headers)

    r = asyncio.run(call())
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert error["message"] and error["code"]
    assert (ledger.balances(), snapshot(queue)) == before


@pytest.mark.parametrize("body", [
    b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',
    b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a\\udfff"}]}]}',
    b'{"model": "m", "prompt": "\\ud800"}', b'{"model": "m", "prompt": "hi", "stop": ["\\ud800"]}'])
def test_a_lone_surrogate_anywhere_is_a_400_not_a_500(app_books: tuple[Any, Ledger, JobQueue], body: bytes) -> None:
    """JSON escapes (`\\ud800`, as curl and most clients send them) decode to lone surrogates
    that no worker can take: refused as invalid Unicode, wherever they are."""
    app, _, _ = app_books
    path = "/v1/completions" if b'"prompt"' in body else "/v1/chat/completions"

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            return await c.post(path, content=body.replace(b'"m"', f'"{MODEL.name}"'.encode()))

    r = asyncio.run(call())
    assert r.status_code == 400 and "surrogate" in r.json()["error"]["message"], (r.status_code, r.text[:300])


def test_models_lists_served_models(app_books: tuple[Any, Ledger, JobQueue]) -> None:
    app, _, _ = app_books

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            return await c.get("/v1/models")

    data = asyncio.run(call()).json()["data"]
    assert [(m["id"], m["owned_by"], m["digest"], m["workers"]) for m in data] == [
        (MODEL.name, "hearth-swarm", MODEL.digest, 1)]
