"""The trusted radius without privileges: pairing by code on loopback, a node that admits paired
peers only, pooling through the sealed tunnel, unsigned and malformed requests, and unpairing.

Runs as any user (no WireGuard): HEARTH_TUNNEL=sealed on both sides.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hearth.identity import NodeIdentity
from hearth.pairing.signed import sign
from tests.conftest import HEARTH, free_port, hearth_env, start_server, stop_server, wait_answering

pytestmark = pytest.mark.slow
ASK = "What is the capital of France?"


def env(home: Path) -> dict[str, str]:
    return {**hearth_env(home, HEARTH_TUNNEL="sealed"), "HEARTH_N_THREADS": "1"}


def cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HEARTH, *args], env=env(home), capture_output=True, text=True, timeout=timeout)


def pair(ant: Path, bee: Path, bee_node_port: int) -> tuple[str, str]:
    port = free_port()
    host = subprocess.Popen([*HEARTH, "pair", "--bind", "127.0.0.1", "--port", str(port), "--name", "bee",
                             "--node-port", str(bee_node_port), "--yes"], env=env(bee),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert host.stdout is not None
    code = None
    lines = []
    for line in host.stdout:
        lines.append(line)
        if m := re.search(r"hearth pair (\S+)", line):
            code = m.group(1)
            break
    assert code, lines
    time.sleep(0.5)
    guest = cli(ant, "pair", code, "--to", f"127.0.0.1:{port}", "--name", "ant", "--yes")
    rest, _ = host.communicate(timeout=30)
    assert guest.returncode == 0 and host.returncode == 0, guest.stderr + rest
    return guest.stdout, "".join(lines) + rest


@pytest.fixture(scope="module")
def circle(tmp_path_factory: pytest.TempPathFactory, models_home: Path) -> Iterator[tuple[Path, Path, str]]:
    tmp = tmp_path_factory.mktemp("sealed")
    ant, bee = tmp / "ant", tmp / "bee"
    ant.mkdir()
    (ant / "models").symlink_to(models_home / "models")
    node_port = free_port()
    ant_out, bee_out = pair(ant, bee, node_port)
    verifier = re.search(r"Verifier: (\S+)", ant_out)
    assert verifier and f"Verifier: {verifier.group(1)}" in bee_out and "sealed tunnel" in ant_out
    log = open(tmp / "node.log", "wb")  # noqa: SIM115
    node = subprocess.Popen([*HEARTH, "node", "--port", str(node_port), "--name", "bee", "--admit", "trusted",
                             "--max-memory", "100M"], env=env(bee), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{node_port}"
    try:
        wait_answering(url + "/v1/node", node, tmp / "node.log")
        yield ant, bee, url
    finally:
        node.terminate()
        node.wait(15)


def test_pooled_through_the_sealed_tunnel_equals_solo(circle: tuple[Path, Path, str]) -> None:
    ant, _, _ = circle
    peers = json.loads(cli(ant, "peers", "--json", "--wait", "0").stdout)
    (bee,) = peers["peers"]
    assert bee["name"] == "bee" and bee["radius"] == "trusted" and bee["verified"]
    # Both sides note when they last saw each other (the orchestrator on an answer, the node on a signed request).
    for home in circle[:2]:
        (peer,) = json.loads((home / "trust" / "peers.json").read_text())
        assert peer["last_seen"] is not None and peer["last_seen"] >= peer["paired_at"]
    solo = cli(ant, "run", ASK, "--max-tokens", "24", "--temperature", "0", "--radius", "machine")
    pooled = cli(ant, "run", ASK, "--max-tokens", "24", "--temperature", "0", "--radius", "trusted", "--pool")
    assert solo.returncode == 0 and pooled.returncode == 0, pooled.stderr
    assert "bee" in pooled.stderr and pooled.stdout == solo.stdout and solo.stdout.strip()


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/v1/node", None), ("POST", "/v1/node/prove", {"nonce": "A" * 43}),
    ("POST", "/v1/leases", {"bytes": 1}), ("POST", "/v1/leases/abcdefgh/heartbeat", None),
    ("DELETE", "/v1/leases/abcdefgh", None), ("GET", "/docs", None), ("GET", "/openapi.json", None),
])
def test_unsigned_requests_learn_nothing(circle: tuple[Path, Path, str], method: str, path: str,
                                         body: object) -> None:
    _, _, url = circle
    r = httpx.request(method, url + path, json=body, timeout=5)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unsigned_request" and "bee" not in r.text


def test_signed_but_wrong_requests_are_refused(circle: tuple[Path, Path, str], tmp_path: Path) -> None:
    ant, _, url = circle
    me = NodeIdentity.load_or_create(ant)
    stranger = NodeIdentity.load_or_create(tmp_path)
    body = b'{"bytes": 1}'
    ok = sign(me, "GET", "/v1/node", b"")
    assert httpx.get(url + "/v1/node", headers=ok).status_code == 200
    replay = httpx.get(url + "/v1/node", headers=ok)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]["message"]
    assert httpx.post(url + "/v1/leases", content=body, headers=sign(stranger, "POST", "/v1/leases", body)
                      ).status_code == 403
    old = sign(me, "POST", "/v1/leases", body, now=time.time() - 120)
    assert httpx.post(url + "/v1/leases", content=body, headers=old).status_code == 401
    swapped = sign(me, "POST", "/v1/leases", b'{"bytes": 2}')
    assert httpx.post(url + "/v1/leases", content=body, headers=swapped).status_code == 401
    garbage = httpx.post(url + "/v1/leases", content=b"\xff{", headers=sign(me, "POST", "/v1/leases", b"\xff{"))
    assert garbage.status_code == 400


def test_unpairing_a_node_mid_stream_stops_using_it(circle: tuple[Path, Path, str]) -> None:
    """This machine unpairs the node its reply is being computed on: the sealed tunnels close at
    once and the stream ends with a clear error (forced to pool, no other node is left)."""
    ant, _, _ = circle
    server = start_server(ant, "--radius", "trusted", "--pool", HEARTH_TUNNEL="sealed")
    try:
        body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Tell me a long story."}],
                "max_tokens": 300, "temperature": 0, "stream": True}
        tokens, error, ended, t_unpair = 0, None, 0.0, 0.0
        unpair: subprocess.Popen[bytes] | None = None
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=120) as r:
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                d = json.loads(line[6:])
                if "error" in d:
                    error = d["error"]
                    ended = time.monotonic() - t_unpair
                elif d["choices"] and d["choices"][0]["delta"].get("content"):
                    tokens += 1
                    if tokens == 5:
                        t_unpair = time.monotonic()
                        unpair = subprocess.Popen([*HEARTH, "unpair", "bee"], env=env(ant))
        assert unpair is not None and unpair.wait(30) == 0
        print(f"stream ended {ended:.2f} s after `hearth unpair bee` started (CLI start-up included), "
              f"after {tokens} tokens")
        assert error is not None and error["code"] in ("does_not_fit", "lease_failed", "engine_crashed"), error
        assert tokens < 300 and ended < 10
        assert httpx.get(server.url + "/hearth/status").status_code == 200
    finally:
        stop_server(server)


def test_unpaired_peer_loses_its_leases_and_cannot_lease_again(circle: tuple[Path, Path, str]) -> None:
    ant, bee, url = circle
    me = NodeIdentity.load_or_create(ant)
    body = b'{"bytes": 1000}'
    json_type = {"content-type": "application/json"}
    lease = httpx.post(url + "/v1/leases", content=body, headers=sign(me, "POST", "/v1/leases", body) | json_type)
    assert lease.status_code == 201 and lease.json()["transport"] == "sealed", lease.text
    status = httpx.get(url + "/v1/node", headers=sign(me, "GET", "/v1/node", b"")).json()
    assert len(status["leases"]) >= 1  # (a lease the previous test left when it unpaired bee may not have expired)
    t0 = time.monotonic()
    unpaired = cli(bee, "unpair", "ant")
    assert unpaired.returncode == 0, unpaired.stderr
    refused = httpx.get(url + "/v1/node", headers=sign(me, "GET", "/v1/node", b""))
    assert refused.status_code == 403
    assert time.monotonic() - t0 < 10
    again = httpx.post(url + "/v1/leases", content=body, headers=sign(me, "POST", "/v1/leases", body))
    assert again.status_code == 403
    gone = cli(bee, "unpair", "ant")
    assert gone.returncode == 3 and "not paired" in gone.stderr
