"""Property tests for what crosses the machine boundary: any answer at all, to any call, gives a
typed result or a HearthError (never another exception); records survive the status message;
endpoints parse back to what was written. The agent is played by httpx.MockTransport."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.discovery.records import DeviceInfo, PeerRecord
from hearth.errors import HearthError
from hearth.ggml.hello import RpcVersion
from hearth.identity import NodeIdentity
from hearth.node_api import wire
from hearth.node_api.client import Status
from tests.node_api.fakes import CALLS, NODE, agent, call, held, valid

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def me(tmp_path_factory: pytest.TempPathFactory) -> NodeIdentity:
    return NodeIdentity.load_or_create(tmp_path_factory.mktemp("me"))


def bodies(me: NodeIdentity) -> st.SearchStrategy[bytes]:
    """Raw bytes, any JSON, and valid answers with one field dropped or replaced by any JSON."""
    good = [v for v in valid(me).values()]

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        body: dict[str, Any] = dict(draw(st.sampled_from(good)))
        key = draw(st.sampled_from(sorted(body)))
        if draw(st.booleans()):
            del body[key]
        else:
            body[key] = draw(json_values)
        return json.dumps(body).encode()

    return st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()) | mutated()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_answer_gives_a_typed_result_or_a_hearth_error(me: NodeIdentity, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(CALLS)))
    status = data.draw(st.sampled_from([200, 201, 204, 400, 401, 403, 404, 409, 500, 502]) | st.integers(200, 599))
    body = data.draw(bodies(me))
    try:
        call(name, agent(me, **{name: httpx.Response(status, content=body)}))
    except HearthError as exc:
        assert exc.message and "Traceback" not in exc.message


names = st.from_regex(r"[A-Za-z0-9 .'_-]{1,63}", fullmatch=True)
devices = st.builds(lambda name, total, part: DeviceInfo(name, total * part // 100, total),
                    st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,31}", fullmatch=True),
                    st.integers(0, 10**15), st.integers(0, 100))
records = st.builds(
    PeerRecord, st.from_regex(r"[a-z2-7]{16}", fullmatch=True), names,
    st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
    st.builds(RpcVersion, st.integers(0, 99), st.integers(0, 99), st.integers(0, 99)),
    st.integers(1, 65535), st.lists(devices, min_size=1, max_size=8).map(tuple), st.just(("192.0.2.7",)),
    st.booleans())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=records, budget=st.integers(0, 2**50))
def test_a_record_survives_the_status_message(me: NodeIdentity, record: PeerRecord, budget: int) -> None:
    sent = wire.NodeStatus.of(record, budget=budget, leases=[wire.LeaseView(**held(lease_id="AbCdEf…"))])
    answer = httpx.Response(200, content=sent.model_dump_json().encode())
    got = call("status", agent(me, status=answer))
    assert isinstance(got, Status) and got.record == record and got.detail == sent


def test_paths_are_those_the_agent_always_served() -> None:
    """Renaming a path would cut off every node of an older hearth: these are fixed."""
    assert (wire.STATUS, wire.PROVE, wire.LEASES) == ("/v1/node", "/v1/node/prove", "/v1/leases")
    assert wire.lease_path("x" * 8) == "/v1/leases/xxxxxxxx"
    assert wire.heartbeat_path("x" * 8) == "/v1/leases/xxxxxxxx/heartbeat"
    assert str(NODE) == "192.0.2.7:11436"
