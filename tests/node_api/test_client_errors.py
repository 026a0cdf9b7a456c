"""Everything that can go wrong between the client and an agent becomes one HearthError that
says what to do: refused connections, timeouts, bodies that are not JSON, lack fields, run too
long, or come with a status hearth never answers. The agent is played by httpx.MockTransport
(fakes.py) because a real one cannot be made to answer wrongly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from hearth.errors import HearthError, InvalidRequest, NodeAnswerInvalid, NodeRefused, NodeUnreachable
from hearth.identity import NodeIdentity, verify_proof
from hearth.net.b64 import encode as b64
from hearth.node_api import wire
from hearth.node_api.client import MAX_ANSWER, NodeClient, Proof, Status
from hearth.node_api.errors import LeaseNotFound, LeaseRefused
from hearth.pairing.signed import NotPaired, Unsigned, Verifier
from tests.node_api.fakes import CALLS, NODE, agent, call, held, raising, record


@pytest.fixture
def me(tmp_path: Path) -> NodeIdentity:
    return NodeIdentity.load_or_create(tmp_path)


def error(status: int, code: str | None, message: str = "The node says no.") -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "invalid_request_error",
                                                  "param": None, "code": code}})


def test_a_well_behaved_agent_gives_typed_answers(me: NodeIdentity) -> None:
    status = call("status", agent(me))
    assert isinstance(status, Status) and status.record == record(me) and status.detail.budget == 10**9
    proof = call("prove", agent(me))
    assert isinstance(proof, Proof)
    verify_proof(me.node_id, proof.public_key, b"n" * 32, proof.signature)
    granted = call("lease", agent(me))
    assert isinstance(granted, wire.Granted) and (granted.gate.host, granted.gate.port) == ("192.0.2.7", 50123)
    assert call("heartbeat", agent(me)) == wire.HeldLease(**held())
    assert call("release", agent(me)) is None


def test_requests_are_signed_with_the_identity_given(me: NodeIdentity) -> None:
    verifier = Verifier({b64(me.public_key): "me"}.get)
    seen: list[str] = []
    inner = agent(me)

    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(verifier.verify(request.method, request.url.path, request.headers, request.content))
        return inner.handle_request(request)

    for name in CALLS:
        call(name, httpx.MockTransport(handle), me)
    assert seen == ["me"] * len(CALLS)
    unsigned: list[bool] = []

    def bare(request: httpx.Request) -> httpx.Response:
        unsigned.append("x-hearth-signature" not in request.headers)
        return inner.handle_request(request)

    call("status", httpx.MockTransport(bare))
    assert unsigned == [True]


@pytest.mark.parametrize("make, says", [
    (lambda r: httpx.ConnectError("[Errno 111] Connection refused", request=r), "is `hearth node` running"),
    (lambda r: httpx.ConnectTimeout("timed out", request=r), "did not answer within 1 s"),
    (lambda r: httpx.ReadTimeout("timed out", request=r), "did not answer within 1 s"),
    (lambda r: httpx.RemoteProtocolError("peer closed connection", request=r), "connection to the node broke"),
    (lambda r: httpx.ReadError("reset", request=r), "connection to the node broke"),
])
@pytest.mark.parametrize("name", list(CALLS))
def test_transport_failures_say_the_node_is_unreachable(name: str, make: object, says: str) -> None:
    with pytest.raises(NodeUnreachable, match=says) as info:
        call(name, raising(make))  # type: ignore[arg-type]
    assert info.value.code == "node_unreachable"


@pytest.mark.parametrize("answer, says", [
    (lambda: httpx.Response(200, content=b"<html>router login</html>"), "not JSON"),
    (lambda: httpx.Response(200, content=b'{"id": "abc'), "not JSON"),
    (lambda: httpx.Response(200, content=b"\xff\xfe{}"), "not JSON"),
    (lambda: httpx.Response(200, json=[1, 2]), "malformed"),
    (lambda: httpx.Response(200, json={}), "malformed"),
    (lambda: httpx.Response(204), "HTTP 204"),
    (lambda: httpx.Response(502, content=b"<html>Bad Gateway</html>"), "no hearth error"),
    (lambda: httpx.Response(404, content=b"Not Found"), "no hearth error"),
    (lambda: httpx.Response(302, headers={"location": "http://elsewhere/"}), "no hearth error"),
    (lambda: httpx.Response(500, json={"detail": "oops"}), "no hearth error"),
    (lambda: httpx.Response(200, content=b" " * (MAX_ANSWER + 1)), "more than a control answer"),
])
@pytest.mark.parametrize("name", ["status", "prove", "heartbeat"])
def test_answers_that_are_not_the_control_api_are_refused(me: NodeIdentity, name: str,
                                                        answer: Callable[[], httpx.Response], says: str) -> None:
    with pytest.raises(NodeAnswerInvalid, match=says) as info:
        call(name, agent(me, **{name: answer()}))
    assert info.value.code == "bad_node_answer"


def test_an_endless_answer_is_cut_off_without_reading_it_all(me: NodeIdentity) -> None:
    read = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1000):  # 64 MB, no Content-Length
            read.append(1)
            yield b"[" * 65536

    with pytest.raises(NodeAnswerInvalid, match="runs past"):
        call("status", agent(me, status=httpx.Response(200, content=endless())))
    assert len(read) <= MAX_ANSWER // 65536 + 2


def status_with(me: NodeIdentity, **changes: object) -> httpx.Response:
    body = json.loads(wire.NodeStatus.of(record(me)).model_dump_json())
    body.update(changes)
    return httpx.Response(200, json={k: v for k, v in body.items() if v is not None})


@pytest.mark.parametrize("changes, says", [
    ({"id": None}, "malformed at 'id'"),
    ({"port": 11436}, "malformed at 'port'"),
    ({"budget": "lots"}, "malformed at 'budget'"),
    ({"devices": [{"name": "CPU"}]}, "malformed at 'devices.0"),
    ({"leases": [{"lease_id": "x"}]}, "malformed at 'leases.0"),
    ({"name": "x" * 500}, "malformed at 'name'"),
    ({"id": "NOT-BASE32-AT-ALL"}, "not a valid record: node id"),
    ({"rpc": "seven"}, "not a valid record"),
    ({"dev": "CPU,10,5"}, "more free memory"),
    ({"full": "2"}, "not a valid record"),
])
def test_a_malformed_status_is_refused_with_the_field_named(me: NodeIdentity, changes: dict[str, object],
                                                            says: str) -> None:
    with pytest.raises(NodeAnswerInvalid, match=says):
        call("status", agent(me, status=status_with(me, **changes)))


def test_a_status_from_another_version_still_gives_its_record(me: NodeIdentity) -> None:
    """Beyond the record every field may be missing, and unknown ones are ignored."""
    bare = {**record(me).to_properties(), "something_new": {"nested": [1]}}
    del bare["full"]
    status = call("status", agent(me, status=httpx.Response(200, json=bare)))
    assert isinstance(status, Status) and status.record == record(me) and status.detail.budget is None


@pytest.mark.parametrize("changes, says", [
    ({"lease_id": "../../v1/node"}, "lease_id"),
    ({"lease_id": "short"}, "lease_id"),
    ({"endpoint": "nowhere"}, "endpoint"),
    ({"endpoint": "192.0.2.7:99999"}, "endpoint"),
    ({"endpoint": "::1:5000"}, "endpoint"),
    ({"endpoint": "evil.example:5000"}, "endpoint"),
    ({"transport": "carrier pigeon"}, "transport"),
    ({"bytes": -1}, "bytes"),
    ({"node_id": None}, "node_id"),
    ({"rpc_version": 7}, "rpc_version"),
])
def test_a_malformed_grant_is_refused(me: NodeIdentity, changes: dict[str, object], says: str) -> None:
    grant = held(**{"rpc_version": "7.0.0", "node_id": me.node_id, **changes})
    body = {k: v for k, v in grant.items() if v is not None}
    with pytest.raises(NodeAnswerInvalid, match=f"malformed at '{says}"):
        call("lease", agent(me, lease=httpx.Response(201, json=body)))


def test_a_grant_with_the_wrong_success_status_is_refused(me: NodeIdentity) -> None:
    body = held(rpc_version="7.0.0", node_id=me.node_id)
    with pytest.raises(NodeAnswerInvalid, match="HTTP 200"):
        call("lease", agent(me, lease=httpx.Response(200, json=body)))


def test_a_proof_that_is_not_base64_is_refused(me: NodeIdentity) -> None:
    bad = httpx.Response(200, json={"node_id": me.node_id, "public_key": "!!!", "signature": "???"})
    with pytest.raises(NodeAnswerInvalid, match="malformed at 'public_key'"):
        call("prove", agent(me, prove=bad))
    padded = httpx.Response(200, json={"node_id": me.node_id, "public_key": "A", "signature": "AAAA"})
    with pytest.raises(NodeAnswerInvalid, match="not base64url"):
        call("prove", agent(me, prove=padded))


@pytest.mark.parametrize("name, answer, raised", [
    ("lease", error(409, "lease_refused", "This node already serves 4 leases, its limit."), LeaseRefused),
    ("heartbeat", error(404, "lease_not_found", "Lease AbCdEfGh… is not active."), LeaseNotFound),
    ("release", error(404, "lease_not_found"), LeaseNotFound),
    ("status", error(401, "unsigned_request", "Pair with `hearth pair`."), Unsigned),
    ("lease", error(403, "not_paired"), NotPaired),
])
def test_the_nodes_own_refusals_come_back_as_their_classes(me: NodeIdentity, name: str, answer: httpx.Response,
                                                           raised: type[HearthError]) -> None:
    with pytest.raises(raised) as info:
        call(name, agent(me, **{name: answer}))
    assert info.value.message == answer.json()["error"]["message"]


@pytest.mark.parametrize("status, code", [(500, "internal_error"), (400, "invalid_request"), (418, None)])
def test_other_refusals_keep_the_nodes_status_code_and_message(me: NodeIdentity, status: int,
                                                               code: str | None) -> None:
    with pytest.raises(NodeRefused) as info:
        call("lease", agent(me, lease=error(status, code, "Internal error in hearth; see the log.")))
    assert (info.value.status, info.value.remote_code) == (status, code)
    assert "see the log" in info.value.message and f"HTTP {status}" in info.value.message


@pytest.mark.parametrize("lease_id", ["../etc", "short", "a" * 65, "ok_but/slash", "AbCdEfGh?x=1"])
def test_a_bad_lease_id_is_never_sent(me: NodeIdentity, lease_id: str) -> None:
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    transport = httpx.MockTransport(handle)

    async def go() -> None:
        async with NodeClient(transport=transport) as client:
            with pytest.raises(InvalidRequest):
                await client.heartbeat(NODE, lease_id)
            with pytest.raises(InvalidRequest):
                await client.release(NODE, lease_id)

    asyncio.run(go())
    assert sent == []
