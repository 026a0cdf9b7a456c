"""The orchestrator's checks on a peer's answers: identity proof and RPC protocol version.

A node with another ggml RPC protocol cannot be had here (one llama.cpp build), so its control
API is played by httpx.MockTransport, signing with a real key; everything else is the real code.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from hearth.ggml.hello import RpcVersion
from hearth.identity import ForgedNode, NodeIdentity
from hearth.net.b64 import decode as unb64
from hearth.net.b64 import encode as b64
from hearth.node_api.client import NodeClient
from hearth.orchestrator.peers import check, discover

HERE = RpcVersion(7, 0, 0)


def fake_agent(identity: NodeIdentity, rpc: str, claim: str | None = None, sign_with: NodeIdentity | None = None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/node":
            return httpx.Response(200, json={"id": claim or identity.node_id, "name": "old box", "v": "0.0.9",
                                             "rpc": rpc, "port": "11436", "dev": "CPU,100,200"})
        if request.url.path == "/v1/node/prove":
            nonce = unb64(json.loads(request.content)["nonce"])
            signer = sign_with or identity
            return httpx.Response(200, json={"node_id": identity.node_id, "public_key": b64(signer.public_key),
                                             "signature": b64(signer.prove(nonce))})
        return httpx.Response(404)

    return httpx.MockTransport(handle)


def run_check(transport: httpx.MockTransport) -> object:
    async def go() -> object:
        async with NodeClient(transport=transport) as nodes:
            return await check(nodes, "192.0.2.7", 11436, "static", HERE)

    return asyncio.run(go())


def test_an_incompatible_rpc_version_is_refused_with_a_clear_reason(tmp_path: Path) -> None:
    node = NodeIdentity.load_or_create(tmp_path)
    peer = run_check(fake_agent(node, "6.1.0"))
    assert peer.verified and not peer.compatible and not peer.usable  # type: ignore[attr-defined]
    assert "ggml RPC 6.1.0, this build 7.0.0" in peer.problem  # type: ignore[attr-defined]
    newer_minor = run_check(fake_agent(node, "7.3.0"))
    assert not newer_minor.compatible  # type: ignore[attr-defined]
    same = run_check(fake_agent(node, "7.0.9"))
    assert same.usable  # type: ignore[attr-defined]


def test_a_node_claiming_another_id_or_key_is_refused(tmp_path: Path) -> None:
    node = NodeIdentity.load_or_create(tmp_path / "a")
    other = NodeIdentity.load_or_create(tmp_path / "b")
    with pytest.raises(ForgedNode):
        run_check(fake_agent(node, "7.0.0", claim=other.node_id))
    with pytest.raises(ForgedNode):
        run_check(fake_agent(node, "7.0.0", sign_with=other))


def test_a_malformed_static_peer_is_a_problem_not_a_crash() -> None:
    """An IPv6 static peer without brackets cannot be told from its port; it is reported, with the fix."""
    peers, problems = asyncio.run(discover(HERE, browse=False, static=["::1:11436", "den:"]))
    assert peers == [] and len(problems) == 2
    assert "in brackets" in problems[0] and "port ''" in problems[1]
