"""Malformed input to `/v1/jobs` (hypothesis, on SQLite): every answer is a clear 4xx with
hearth's error body, never a 500, and a refused request writes nothing (neither a job nor any
of the free allowance)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hearth.public_swarm.coordinator.allowance import allowance
from tests.public_swarm.dispatch_kit import MODEL
from tests.public_swarm.jobs_http_kit import Books, books
from tests.public_swarm.jobs_kit import snapshot

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=12), inner, max_size=4), max_leaves=12)
fields = {
    "model": st.one_of(st.just(MODEL.name), st.text(max_size=10), scalars, st.just("sha256:" + "g" * 64)),
    "messages": st.one_of(st.just([{"role": "user", "content": "hi"}]), json_values,
                          st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "wizard", 3]),
                                                          "content": st.one_of(st.text(max_size=20), scalars)}),
                                   max_size=3)),
    "prompt": st.one_of(st.text(max_size=20), scalars, st.just("\ud800"), st.just("a\x00b")),
    "max_tokens": st.one_of(st.integers(-5, 10**7), scalars),
    "temperature": st.one_of(st.floats(-3, 3), scalars, st.just(float("nan"))),
    "top_p": scalars, "seed": st.one_of(st.integers(-1, 2**33), scalars),
    "stop": st.one_of(st.lists(st.text(max_size=70), max_size=6), scalars),
    "key": st.one_of(st.text(max_size=140), scalars), "stream": st.booleans(), "extra": json_values,
}
VALID = {"model": MODEL.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
near_valid = st.fixed_dictionaries({}, optional=fields).map(lambda junk: json.dumps({**VALID, **junk}))
bodies = st.one_of(near_valid, near_valid, st.fixed_dictionaries({}, optional=fields).map(json.dumps), json_values.map(json.dumps),
                   st.binary(max_size=60), st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")))
paths = st.one_of(st.just("/v1/jobs"), st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789%-._~", max_size=80)
                  .map(lambda s: "/v1/jobs/" + s))
queries = st.dictionaries(st.sampled_from(["state", "limit", "x"]), st.one_of(st.text(max_size=10),
                                                                              st.integers(-5, 10**6).map(str)))


def allowance_rows(b: Books) -> list[Any]:
    with b.ledger.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(allowance))]


def test_malformed_requests_get_a_4xx_and_write_nothing(tmp_path: Path) -> None:
    seen: Counter[int] = Counter()
    with books(f"sqlite:///{tmp_path / 'fuzz.db'}") as b:

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.sampled_from(["POST", "POST", "POST", "GET", "DELETE", "PUT"]), st.one_of(st.just("/v1/jobs"), paths), queries, bodies,
               st.sampled_from([None, "7", "-1", "x", "9" * 20]))
        def check(method: str, path: str, query: dict[str, str], body: bytes, ceiling: str | None) -> None:
            before = snapshot(b.queue), allowance_rows(b)
            headers = {"content-type": "application/json", **({"x-hearth-max-price": ceiling} if ceiling else {})}

            async def ask() -> tuple[int, bytes]:
                async with b.anonymous() as client:
                    r = await client.request(method, path, params=query, content=body, headers=headers)
                    return r.status_code, r.content

            status, answer = asyncio.run(ask())
            seen[status] += 1
            assert status < 500, (status, answer[:300])
            if status >= 400:
                assert (snapshot(b.queue), allowance_rows(b)) == before, (method, path, body[:100])
                error = json.loads(answer).get("error")
                assert isinstance(error, dict) and error.get("message"), answer[:200]

        check()
    print(f"answers by status: {dict(sorted(seen.items()))}")
    assert {202, 400}.issubset(seen), seen
