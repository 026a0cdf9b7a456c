"""The trusted radius between network namespaces, with real WireGuard (wireguard-go).

ant (1) pairs with bee (2) by a code found over mDNS; bee runs a node that admits paired peers
only; cat (3) is an unpaired machine on the same bridge. Each namespace names its WireGuard
interface apart: /var/run/wireguard is shared by all namespaces on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lan import Household, household, needs_root

pytestmark = [pytest.mark.root, pytest.mark.slow, needs_root]
ASK = "What is the capital of France?"


def wg_name(h: Household, i: int) -> str:
    return f"{h.prefix}w{i}"


def env(h: Household, i: int) -> dict[str, str]:
    return {"HEARTH_WG_INTERFACE": wg_name(h, i), "HEARTH_TUNNEL": "wireguard"}


def rpc_servers(home: Path) -> list[int]:
    """ggml RPC server processes started by the node whose data folder is `home`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"hearth.ggml.server" in cmd and str(home).encode() in cmd:
            found.append(int(pid))
    return found


def wg_peers(h: Household, i: int) -> list[str]:
    from wireguard_tools import WireguardDevice

    device = WireguardDevice.get(wg_name(h, i))  # the UAPI socket is reachable from any namespace
    try:
        return [str(k) for k in device.get_config().peers]
    finally:
        device.close()


@pytest.fixture(scope="module")
def circle(tmp_path_factory: pytest.TempPathFactory, models_home: Path) -> Iterator[Household]:
    assert shutil.which("wireguard-go"), "scripts/setup.sh installs wireguard-go when run as root"
    tmp = tmp_path_factory.mktemp("trusted")
    with household(tmp, 3) as h:
        for i in (1, 2, 3):
            h.home(i).mkdir(parents=True)
        (h.home(1) / "models").symlink_to(models_home / "models")
        yield h


def pair(h: Household) -> tuple[str, str]:
    host = h.spawn(2, sys.executable, "-m", "hearth.cli.main", "pair", "--name", "bee", "--yes", **env(h, 2))
    logfile = h.tmp / f"proc{len(h.procs) - 1}-2.log"
    deadline = time.monotonic() + 30
    code = None
    while code is None and time.monotonic() < deadline:
        m = re.search(r"hearth pair (\d+-[a-z]+-[a-z]+)", logfile.read_text() if logfile.exists() else "")
        code = m.group(1) if m else None
        time.sleep(0.1)
    assert code, logfile.read_text()
    time.sleep(1.0)  # the mDNS record goes out once the listener is up
    guest = h.hearth(1, "pair", code, "--name", "ant", "--yes", **env(h, 1))
    assert guest.returncode == 0, guest.stderr + guest.stdout
    assert host.wait(30) == 0, logfile.read_text()
    return guest.stdout, logfile.read_text()


def wait_answering(h: Household, i: int, url: str) -> None:
    """Any HTTP answer (a paired-only node answers 401 to an unsigned request)."""
    code = f"import httpx; httpx.get({url!r}, timeout=1)"
    deadline = time.monotonic() + 60
    while h.run(i, sys.executable, "-c", code, timeout=10).returncode != 0:
        assert time.monotonic() < deadline, f"{url} did not answer; logs in {h.tmp}"
        time.sleep(0.3)


def test_pair_by_code_then_pool_over_wireguard(circle: Household) -> None:
    h = circle
    ant_out, bee_out = pair(h)
    verifier = re.search(r"Verifier: (\S+)", ant_out)
    assert verifier and f"Verifier: {verifier.group(1)}" in bee_out
    assert "paired with bee" in ant_out and "paired with ant" in bee_out
    assert len(wg_peers(h, 1)) == 1 and len(wg_peers(h, 2)) == 1

    h.spawn(2, sys.executable, "-m", "hearth.cli.main", "node", "--bind", h.addr(2), "--name", "bee",
            "--admit", "trusted", "--max-memory", "100M", **env(h, 2))
    bee = json.loads((h.home(1) / "trust" / "peers.json").read_text())[0]["info"]
    wait_answering(h, 1, f"http://{bee['tunnel_address']}:11436/v1/node")

    listed = h.hearth(1, "peers", "--json", "--wait", "1", **env(h, 1))
    assert listed.returncode == 0, listed.stderr
    peers = json.loads(listed.stdout)
    row = next(p for p in peers["peers"] if p["name"] == "bee")  # type: ignore[union-attr]
    assert row.get("verified") and row["radius"] == "trusted" and row["address"] == bee["tunnel_address"], peers

    solo = h.hearth(1, "run", ASK, "--max-tokens", "24", "--temperature", "0", "--radius", "machine", **env(h, 1))
    pooled = h.hearth(1, "run", ASK, "--max-tokens", "24", "--temperature", "0", "--radius", "trusted", "--pool",
                      **env(h, 1))
    assert solo.returncode == 0 and pooled.returncode == 0, pooled.stderr
    assert "bee" in pooled.stderr and pooled.stdout == solo.stdout and solo.stdout.strip()
    # The household radius does not reach a paired-only node.
    lan_only = h.hearth(1, "run", ASK, "--max-tokens", "4", "--pool", **env(h, 1))
    assert lan_only.returncode != 0


STRANGER = textwrap.dedent("""
    import json, socket, sys
    targets = json.loads(sys.argv[1])
    reached = []
    attempts = 0
    for i in range(1000):
        host, port = targets[i % len(targets)]
        attempts += 1
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                s.settimeout(0.5)
                s.sendall(b"POST /v1/leases HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 12\\r\\n\\r\\n{\\"bytes\\": 1}")
                data = s.recv(100)
                if data:
                    reached.append([host, port, data[:40].decode(errors="replace")])
        except OSError:
            pass
    print(json.dumps({"attempts": attempts, "reached": reached[:5], "n_reached": len(reached)}))
""")

UNPAIR_CLIENT = textwrap.dedent("""
    import httpx, json, subprocess, sys, time
    base, ns, home, wg, flag = sys.argv[1:6]
    body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 200, "temperature": 0, "stream": True}
    text, error, unpaired = [], None, None
    t_unpair = t_end = None
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=180) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            d = json.loads(line[6:])
            if "error" in d:
                error = d["error"]
                continue
            if d["choices"] and d["choices"][0]["delta"].get("content"):
                text.append(d["choices"][0]["delta"]["content"])
                if len(text) == 5:
                    t_unpair = time.time()
                    unpaired = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "hearth.cli.main",
                                                 "unpair", "ant"], env={"HEARTH_HOME": home, "HEARTH_WG_INTERFACE": wg,
                                                 "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
    t_end = time.time()
    rc = unpaired.wait(30) if unpaired else None
    print(json.dumps({"tokens": len(text), "error": error, "unpair_rc": rc, "t_unpair": t_unpair, "t_end": t_end,
                      "alive": httpx.get(base + "/hearth/status").status_code}))
""")


def test_strangers_reach_nothing_and_unpair_cuts_a_streaming_peer(circle: Household) -> None:
    h = circle
    trust_b = h.home(2) / "trust" / "peers.json"
    assert trust_b.exists(), "needs the pairing of the previous test"
    bee = json.loads((h.home(1) / "trust" / "peers.json").read_text())[0]["info"]
    port = "11500"
    h.spawn(1, sys.executable, "-m", "hearth.cli.main", "serve", "--port", port, "--radius", "trusted", "--pool",
            **env(h, 1))
    h.wait_http(1, f"http://127.0.0.1:{port}/hearth/status")
    load = h.run(1, sys.executable, "-c", "import httpx; print(httpx.post('http://127.0.0.1:11500/v1/chat/completions',"
                 " json={'model': 'smollm2-135m', 'messages': [{'role': 'user', 'content': 'hi'}], 'max_tokens': 2},"
                 " timeout=120).status_code); print(httpx.get('http://127.0.0.1:11500/hearth/status').text)")
    assert load.stdout.startswith("200"), load.stderr
    status = json.loads(load.stdout.splitlines()[1])
    (lease,) = status["leases"]
    relay_host, relay_port = lease["endpoint"].rsplit(":", 1)
    assert relay_host == bee["tunnel_address"] and rpc_servers(h.home(2))

    # cat knows every address and even routes the tunnel range to bee: it still reaches nothing.
    h.run(3, "ip", "route", "add", "10.99.0.0/16", "via", h.addr(2))
    targets = [[h.addr(2), 11436], [bee["tunnel_address"], 11436], [bee["tunnel_address"], int(relay_port)],
               [h.addr(2), int(relay_port)]]
    probe = h.run(3, sys.executable, "-c", STRANGER, json.dumps(targets), timeout=600)
    assert probe.returncode == 0, probe.stderr
    result = json.loads(probe.stdout)
    assert result["attempts"] == 1000 and result["n_reached"] == 0, result

    # bee unpairs ant while ant streams a reply through bee's RPC server.
    client = h.spawn(1, sys.executable, "-c", UNPAIR_CLIENT, f"http://127.0.0.1:{port}", h.ns(2), str(h.home(2)),
                     wg_name(h, 2), "")
    before = trust_b.stat().st_mtime_ns
    deadline = time.monotonic() + 120
    while trust_b.stat().st_mtime_ns == before:
        assert time.monotonic() < deadline and client.poll() is None, "the client never unpaired"
        time.sleep(0.005)
    revoked = trust_b.stat().st_mtime_ns / 1e9
    servers_gone = peer_gone = None
    while servers_gone is None or peer_gone is None:
        now = time.time()
        if servers_gone is None and not rpc_servers(h.home(2)):
            servers_gone = now - revoked
        if peer_gone is None and not wg_peers(h, 2):
            peer_gone = now - revoked
        assert now - revoked < 10, "bee kept serving an unpaired peer"
        time.sleep(0.01)
    assert client.wait(180) == 0
    out = json.loads((h.tmp / f"proc{len(h.procs) - 1}-1.log").read_text().strip().splitlines()[-1])
    print(f"unpair: RPC servers gone after {servers_gone:.3f} s, WireGuard peer after {peer_gone:.3f} s; "
          f"stream ended {out['t_end'] - out['t_unpair']:.2f} s after the unpair began")
    assert servers_gone < 1.0 and peer_gone < 1.0
    assert out["unpair_rc"] == 0 and out["tokens"] >= 5
    # Forced to pool with no other node, the stream ends with a clear error; the server stays up.
    assert out["error"] is not None and out["error"]["code"] in ("does_not_fit", "lease_failed", "engine_crashed")
    assert out["alive"] == 200
