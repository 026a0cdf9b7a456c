"""The node agent's control API on loopback: status, proofs, leases, and malformed requests."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.ggml.hello import probe
from hearth.identity import verify_proof
from hearth.net.b64 import decode as unb64
from hearth.net.b64 import encode as b64
from tests.conftest import HEARTH, free_port, hearth_env, wait_answering

pytestmark = pytest.mark.slow


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "node.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*HEARTH, "node", "--port", str(port), "--name", "test node", "--max-memory", "300M"],
                            env=hearth_env(tmp_path), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url + "/v1/node", proc, tmp_path / "node.log")
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


def test_status_proof_and_lease_cycle(agent: str) -> None:
    status = httpx.get(agent + "/v1/node").json()
    assert status["name"] == "test node" and status["budget"] == 300_000_000 and status["rpc"] == "7.0.0"
    nonce = os.urandom(32)
    proof = httpx.post(agent + "/v1/node/prove", json={"nonce": b64(nonce)}).json()
    verify_proof(status["id"], unb64(proof["public_key"]), nonce, unb64(proof["signature"]))

    lease = httpx.post(agent + "/v1/leases", json={"bytes": 100_000_000}).json()
    host, port = lease["endpoint"].rsplit(":", 1)
    assert host == "127.0.0.1" and str(probe(host, int(port))) == "7.0.0"
    status = httpx.get(agent + "/v1/node").json()
    assert status["dev"].startswith("CPU,200000000,")
    # Anyone may read the status; it must not hand out the id that renews or releases the lease.
    assert lease["lease_id"] not in json.dumps(status) and status["leases"][0]["lease_id"].endswith("…")
    assert httpx.post(f"{agent}/v1/leases/{lease['lease_id']}/heartbeat").status_code == 200
    refused = httpx.post(agent + "/v1/leases", json={"bytes": 250_000_000})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "lease_refused"
    assert httpx.delete(f"{agent}/v1/leases/{lease['lease_id']}").status_code == 204
    assert httpx.delete(f"{agent}/v1/leases/{lease['lease_id']}").status_code == 404
    with pytest.raises(OSError):
        import socket

        socket.create_connection((host, int(port)), timeout=1).close()  # the server is gone


def test_leases_expire_without_heartbeats(agent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lease = httpx.post(agent + "/v1/leases", json={"bytes": 1}).json()
    assert 0 < lease["expires_in"] <= 15
    deadline = time.monotonic() + 25
    while httpx.get(agent + "/v1/node").json()["leases"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert httpx.get(agent + "/v1/node").json()["leases"] == []
    assert httpx.post(f"{agent}/v1/leases/{lease['lease_id']}/heartbeat").status_code == 404


@pytest.mark.parametrize("method, path, body, status", [
    ("post", "/v1/leases", b"{", 400),
    ("post", "/v1/leases", b"[]", 400),
    ("post", "/v1/leases", b'{"bytes": -1}', 400),
    ("post", "/v1/leases", b'{"bytes": "lots"}', 400),
    ("post", "/v1/leases", b'{"bytes": 1, "extra": true}', 400),
    ("post", "/v1/node/prove", b'{"nonce": "short"}', 400),
    ("post", "/v1/node/prove", b'{"nonce": "' + b"!" * 40 + b'"}', 400),
    ("post", "/v1/leases/not-a-lease-id/heartbeat", b"", 404),
    ("post", "/v1/leases/..%2F..%2Fetc/heartbeat", b"", 404),
    ("delete", "/v1/leases/AAAAAAAAAAAAAAAAAAAAAAAA", b"", 404),
    ("get", "/v1/nothing", b"", 404),
])
def test_malformed_control_requests_get_clear_4xx(agent: str, method: str, path: str, body: bytes, status: int) -> None:
    r = httpx.request(method.upper(), agent + path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"]["message"] and "Traceback" not in r.text


@pytest.mark.parametrize("args, says", [
    (["--bind", "0.0.0.0"], "never listens on every interface"),
    (["--bind", "::"], "never listens on every interface"),
    (["--bind", "my-laptop"], "not an IP address"),
    (["--max-memory", "much"], "not a size"),
    (["--cache-size", "lots"], "not a size"),
    (["--peer", "nohost"], "HOST:PORT"),
    (["--name", "bad\\nname"], "--name"),
])
def test_node_refuses_bad_options(tmp_path: Path, args: list[str], says: str) -> None:
    r = subprocess.run([*HEARTH, "node", *args], env=hearth_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and says in r.stderr, r.stderr
