"""The paired-only control API in process, under random requests: signed or not, any path, any
body. Nothing may fail with a 500, and nothing unsigned may get an answer.

The app is driven with Starlette's TestClient (no socket): the point is the parsers and the
signature check, not the transport, which test_trusted_sealed.py covers for real.
"""

from __future__ import annotations

import ipaddress
import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.discovery.records import DeviceInfo
from hearth.ggml.hello import RpcVersion
from hearth.identity import NodeIdentity
from hearth.net.b64 import encode as b64
from hearth.pairing.exchange import PairingInfo
from hearth.pairing.signed import Verifier, sign
from hearth.pairing.trust import TrustedPeer
from hearth.rpc_pool.agent import create_agent_app
from hearth.rpc_pool.leases import LeaseManager

PATHS = ["/v1/node", "/v1/node/prove", "/v1/leases", "/v1/leases/AAAAAAAAAAAA/heartbeat", "/v1/leases/AAAAAAAAAAAA",
         "/v1/leases/%2e%2e/heartbeat", "/", "/docs", "/v1/node/drain", "/v1/node/stop"]
"""`/v1/node/events` is fuzzed over a real socket (tests/rpc_pool/test_node_events.py): a stream
that stays open does not fit this in-process client."""
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                        st.sampled_from(["bytes", "nonce", "extra", "t"]), c, max_size=3), max_leaves=6)


@pytest.fixture(scope="module", params=["paired", "household"])
def paired(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, NodeIdentity | None]:
    """The control API of a paired-only node, and of a household node (signatures ignored)."""
    tmp = tmp_path_factory.mktemp("agent")
    node, friend = NodeIdentity.load_or_create(tmp / "node"), NodeIdentity.load_or_create(tmp / "friend")
    peer = TrustedPeer(PairingInfo("friend", b64(friend.public_key), b64(bytes(32)), "10.99.0.7", ()), 0.0,
                       b64(bytes(32)))
    verifier = Verifier(lambda key: peer if key == peer.info.identity_key else None)
    # No lease slots: every well-formed lease request is refused (409) before any RPC server starts.
    manager = LeaseManager("127.0.0.1", 0, tmp / "cache", tmp / "logs", threads=1, sealed=True, max_leases=0)
    app = create_agent_app(node, "node", 11436, "127.0.0.1", RpcVersion(7, 0, 0),
                           lambda: [DeviceInfo("CPU", 10, 10)], manager,
                           paired_only=verifier if request.param == "paired" else None,
                           tunnel_net=ipaddress.IPv4Network("10.99.0.0/16"))
    return TestClient(app, raise_server_exceptions=False), friend if request.param == "paired" else None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT"]), path=st.sampled_from(PATHS), body=JSON,
       signed=st.booleans(), raw=st.binary(max_size=40) | st.none())
def test_random_requests_never_crash_and_unsigned_never_succeed(
        paired: tuple[TestClient, NodeIdentity | None], method: str, path: str, body: object, signed: bool,
        raw: bytes | None) -> None:
    client, friend = paired
    content = raw if raw is not None else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if signed and friend is not None:
        headers |= sign(friend, method, path.replace("%2e", "."), content)
    r = client.request(method, path, content=content, headers=headers)
    assert r.status_code < 500, r.text
    if path in ("/v1/node/drain", "/v1/node/stop"):  # never from here: only the node's own machine
        assert r.status_code in (403, 413) and "Traceback" not in r.text, r.text
        return
    if friend is None:
        assert r.status_code in (200, 400, 404, 405, 409), r.text  # a household node: anyone may ask
    elif not signed:
        assert r.status_code == 401, r.text  # before routing or parsing: the caller learns nothing else
    assert "Traceback" not in r.text
