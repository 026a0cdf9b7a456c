"""Every route's body fuzzed (hypothesis) against a real `hearth coordinator` process: each answer
is a clear 4xx with hearth's error body (or a 200 only for a body the wire model accepts), never
a 500, and the ledger changes by nothing but what was accepted; its audit stays clean."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from pydantic import ValidationError

from hearth.identity import NodeIdentity
from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.wire import GrantRequest, WorkerRegistration
from tests.public_swarm.coordinator_proc import Coordinator, coordinator
from tests.public_swarm.limits_kit import UNLIMITED

pytestmark = pytest.mark.slow

VALID_MODEL = {"digest": "ab" * 32, "name": "qwen2.5-7b", "n_params": 7_600_000_000, "quantization": "Q4_K_M",
               "n_ctx": 4096, "decode_tps": 12.5}
VALID_WORKER = {"name": "den", "models": [VALID_MODEL],
                "hardware": {"cpu": "x86", "cores": 8, "memory_bytes": 1 << 34}}
VALID_GRANT = {"account": "abcdefgh", "amount": 5, "key": "fuzz-key-0001"}

nasty = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["\ud800", "a\x00b", "x" * 200, "", "Q4_K_M", "ab" * 32, "1e400", "operator", "-1"]),
)
json_values = st.recursive(nasty, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                                               inner, max_size=4),
                           max_leaves=12)


def mutated(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The valid body with one field (or one nested field) replaced, removed, or an extra added."""
    def change(path: list[str], value: Any, drop: bool) -> Any:
        body = json.loads(json.dumps(valid))
        node = body
        for part in path[:-1]:
            node = node[part] if not isinstance(node, list) else node[0]
        if isinstance(node, list):
            node = node[0]
        if drop:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
        return body

    paths: list[list[str]] = []

    def walk(node: Any, prefix: list[str]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append([*prefix, k])
                walk(v, [*prefix, k])
        elif isinstance(node, list) and node:
            walk(node[0], prefix)

    walk(valid, [])
    extra = st.builds(lambda v: {**valid, "surprise": v}, nasty)
    plausible = json_values | st.integers(min_value=-5, max_value=10**16) | \
        st.from_regex(r"[a-z0-9._:-]{1,24}", fullmatch=True)
    return st.just(valid) | st.builds(change, st.sampled_from(paths), plausible, st.booleans()) | extra


def raw_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                     st.just(b'{"name": "\\ud800"}'), st.just(b"[" * 5000), st.just(b" " * (300 * 1024)))


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    # hundreds of requests from one address: the rate limits (tested in test_ratelimit_http.py) must not bind
    with coordinator(tmp_path_factory.mktemp("coordinator-fuzz"), None, *UNLIMITED) as c:
        yield c


def _client(identity: NodeIdentity) -> httpx.Client:
    return httpx.Client(auth=SignedAuth(identity), timeout=30, headers={"content-type": "application/json"})


def _accepts(model: type[WorkerRegistration] | type[GrantRequest], body: bytes) -> bool:
    try:
        model.model_validate_json(body)
    except ValidationError:
        return False
    return True


ROUTES = [("POST", "/v1/workers", WorkerRegistration, VALID_WORKER), ("POST", "/v1/grants", GrantRequest, VALID_GRANT),
          ("GET", "/v1/credits", None, {}), ("GET", "/v1/workers", None, {}), ("GET", "/v1/prices", None, {})]


@pytest.mark.parametrize("as_operator", [False, True], ids=["stranger", "operator"])
@pytest.mark.parametrize(("method", "path", "model", "valid"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES])
def test_fuzzed_bodies_get_4xx_and_change_nothing(coord: Coordinator, method: str, path: str, model: Any,
                                                  valid: dict[str, Any], as_operator: bool) -> None:
    identity = coord.operator if as_operator else NodeIdentity(SigningKey.generate())
    granted: dict[str, int] = {}
    seen: list[int] = []
    with _client(identity) as http, coord.ledger() as ledger:
        assert http.get(coord.url + "/v1/credits").status_code == 200  # the welcome, before the snapshot
        before = ledger.balances()
        bodies = raw_bodies() | (mutated(valid) if valid else json_values).map(lambda v: json.dumps(v).encode())

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(body=bodies)
        def one(body: bytes) -> None:
            answer = http.request(method, coord.url + path, content=body)
            seen.append(answer.status_code)
            assert answer.status_code < 500, (body[:200], answer.text[:500])
            if answer.status_code == 200:
                # only a body the wire model accepts (or a route that reads none) is served
                assert model is None or _accepts(model, body), body[:200]
                if path == "/v1/grants":
                    g = GrantRequest.model_validate_json(body)
                    granted.setdefault(g.key, g.amount)
                    assert as_operator
                return
            error = answer.json()["error"]
            assert 400 <= answer.status_code < 500 and error["message"] and error["code"], answer.text[:300]

        one()
        after = ledger.balances()
        if valid:  # the valid body itself was among the examples: the positive path ran too
            assert (200 if as_operator or path != "/v1/grants" else 403) in seen
        assert ledger.audit() == []
    changed = {k for k in set(before) | set(after) if before.get(k, 0) != after.get(k, 0)}
    if not granted:
        assert not changed
    else:
        assert before.get("operator", 0) - after.get("operator", 0) == sum(granted.values())
