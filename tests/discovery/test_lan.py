"""Real mDNS, real control APIs and real RPC leases between network namespaces."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.lan import household, needs_root

pytestmark = [pytest.mark.root, pytest.mark.slow, needs_root]

ADVERTISE = textwrap.dedent("""
    import socket, sys, time
    from zeroconf import ServiceInfo, Zeroconf
    addr, name, props = sys.argv[1], sys.argv[2], dict(p.split("=", 1) for p in sys.argv[3:])
    zc = Zeroconf(interfaces=[addr])
    zc.register_service(ServiceInfo("_hearth._tcp.local.", name + "._hearth._tcp.local.",
        addresses=[socket.inet_aton(addr)], port=11436, properties=props,
        server=name + ".local."))
    print("advertising", flush=True)
    time.sleep(60)
""")


def test_nodes_discover_each_other_and_forgeries_are_refused(tmp_path: Path) -> None:
    with household(tmp_path, 3) as lan:
        lan.start_node(2, "80M")
        lan.start_node(3, "120M")
        found = lan.peers(1, "--wait", "3")
        peers = {p["name"]: p for p in found["peers"]}  # type: ignore[index, union-attr]
        assert set(peers) == {"node2", "node3"}
        assert peers["node2"]["free_bytes"] == 80_000_000 and peers["node3"]["free_bytes"] == 120_000_000
        assert all(p["verified"] and p["compatible"] and p["source"] == "mdns" for p in peers.values())
        node2_id = peers["node2"]["node_id"]

        # A record claiming node2's id, pointing at node3's agent (which proves its own key).
        forged = ["id=" + str(node2_id), "name=impostor", "v=0.1.0", "rpc=7.0.0", "port=11436", "dev=CPU,9,9"]
        lan.spawn(3, sys.executable, "-c", ADVERTISE, lan.addr(3), "impostor", *forged)
        # A record that does not parse at all.
        lan.spawn(3, sys.executable, "-c", ADVERTISE, lan.addr(3), "garbage", "id=NOPE", "name=x\x01", "port=99999")
        found = lan.peers(1, "--wait", "4")
        names = sorted(p["name"] for p in found["peers"])  # type: ignore[index, union-attr]
        assert names == ["node2", "node3"]
        problems = "\n".join(found["problems"])  # type: ignore[arg-type]
        assert f"advertised node {node2_id}" in problems
        assert "garbage" in problems and "base32" in problems

        # The static path: a peer given by address, without mDNS.
        static = lan.peers(1, "--wait", "0", "--peer", f"{lan.addr(2)}:11436")
        assert any(p["source"] in ("static", "mdns") and p["name"] == "node2" for p in static["peers"])  # type: ignore[index, union-attr]


LEASE_AND_PROBE = textwrap.dedent("""
    import httpx, json, sys
    from hearth.ggml.hello import probe
    node = sys.argv[1]
    lease = httpx.post(f"http://{node}:11436/v1/leases", json={"bytes": 1000}).raise_for_status().json()
    host, port = lease["endpoint"].rsplit(":", 1)
    print(json.dumps({"lease": lease, "version": str(probe(host, int(port)))}))
""")

KNOCK = textwrap.dedent("""
    import socket, sys
    host, port, tries = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    answered = 0
    for _ in range(tries):
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(bytes([14]) + (24).to_bytes(8, "little") + bytes(24))
            s.settimeout(2)
            try:
                if s.recv(64):
                    answered += 1
            except (ConnectionResetError, socket.timeout):
                pass
    print(answered)
""")


def test_only_the_lessee_reaches_a_leased_rpc_server(tmp_path: Path) -> None:
    with household(tmp_path, 3) as lan:
        lan.start_node(2, "200M")
        got = lan.run(1, sys.executable, "-c", LEASE_AND_PROBE, lan.addr(2))
        assert got.returncode == 0, got.stderr
        import json

        result = json.loads(got.stdout)
        assert result["version"] == "7.0.0"
        host, port = result["lease"]["endpoint"].rsplit(":", 1)
        assert host == lan.addr(2)
        # Machine 3 is on the same LAN but is not the lessee: 0 of 200 attempts get an answer.
        knock = lan.run(3, sys.executable, "-c", KNOCK, host, port, "200")
        assert knock.returncode == 0, knock.stderr
        assert knock.stdout.strip() == "0"
        status = lan.run(1, sys.executable, "-c",
                         f"import httpx; print(httpx.get('http://{lan.addr(2)}:11436/v1/node').text)")
        lease = json.loads(status.stdout)["leases"][0]
        assert lease["refused_connections"] >= 200
        # Even knowing the lease id, another machine can neither renew nor release it.
        lease_id = result["lease"]["lease_id"]
        for method in ("post", "delete"):
            path = f"/v1/leases/{lease_id}" + ("/heartbeat" if method == "post" else "")
            other = lan.run(3, sys.executable, "-c",
                            f"import httpx; print(httpx.{method}('http://{lan.addr(2)}:11436{path}').status_code)")
            assert other.stdout.strip() == "404", other.stderr
        # The lease's RPC server itself listens on node 2's loopback only: its port is not on the LAN.
        rpc_port = lease["endpoint"] and status.stdout and json.loads(status.stdout)["leases"][0]["endpoint"]
        assert rpc_port.startswith(lan.addr(2))
