#!/usr/bin/env python3
"""What does the sealed fallback tunnel cost, against WireGuard and plain TCP? Needs root and wireguard-go.

Two network namespaces on a bridge (scripts/lan.py) stand for two machines. Results go to docs/benchmarks.md:
1. byte streams, Python asyncio sender -> sink: throughput (128 MiB one way) and the round trip of a 9 KiB
   request / 200 B reply (about one token's RPC traffic per node), over plain TCP and the sealed tunnel on
   loopback and between the namespaces, and TCP through WireGuard (wireguard-go) between them;
2. ms/token of `hearth run --json` (SmolLM2-135M): solo, and pooled with a second node as household (plain
   relay), trusted over WireGuard, trusted over the sealed tunnel (namespaces; and on loopback, like the tests).

    sudo .venv/bin/python scripts/bench_tunnel.py [--runs 3] [--tokens 64]

It runs itself inside the namespaces as a helper (--serve, --client, --wg-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median as med
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import lan  # noqa: E402
from benchdoc import write_section  # noqa: E402

from hearth.net.pump import nodelay  # noqa: E402
from hearth.node_api.wire import STATUS  # noqa: E402
from hearth.ports import DEFAULT_NODE_PORT, DEFAULT_PAIR_PORT  # noqa: E402
from hearth.tunnel.sealed import SealedDialer, SealedGate, lease_key  # noqa: E402

MIB = 1 << 20
BULK, BLOCK = 128 * MIB, 256 * 1024
REQ, REPLY, PINGS, WARM = 9 * 1024, 200, 3000, 300
PREFIX = "hbt"  # namespaces hbt1, hbt2 (+ switch hbtsw); tests use "h" + hex digits, so no clash
WG_NET = "10.98.0"  # this script's own WireGuard pair, apart from hearth's 10.99.0.0/16
RTS = 1.3  # round trips per token per node, measured by scripts/bench_rpc.py
PROMPT = "Write a long essay about the history of Rome."
HEARTH = [sys.executable, "-m", "hearth.cli.main"]
Flow = tuple[str, dict[str, list[float]]]  # label, {"mibs": [...], "rtt_us": [...]}
Phase = tuple[str, list[float], list[float], str]  # label, solo ms/token, pooled ms/token, split


async def serve(binds: list[str], gate_bind: str, key: bytes) -> None:
    """A sink on each bind address and a sealed gate in front of the loopback one; print the ports."""
    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nodelay(writer)
        if await reader.readexactly(1) == b"B":  # bulk: count to EOF, answer the count
            n = 0
            while data := await reader.read(MIB):
                n += len(data)
            writer.write(n.to_bytes(8, "big"))
        else:  # ping-pong until EOF
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while await reader.readexactly(REQ):
                    writer.write(bytes(REPLY))
        await writer.drain()
        writer.close()

    servers = {host: await asyncio.start_server(sink, host, 0) for host in binds}
    gate = SealedGate(gate_bind, key, servers["127.0.0.1"].sockets[0].getsockname()[1])
    ports = {host: s.sockets[0].getsockname()[1] for host, s in servers.items()}
    print(json.dumps({"ports": ports, "gate": await gate.start()}), flush=True)
    await asyncio.Event().wait()


async def client(host: str, port: int, key: bytes | None) -> dict[str, list[float]]:
    """Ping-pong (its warm-up also does WireGuard's handshake), then the bulk runs."""
    if key is not None:  # the dialer lives in the sender's process, like the orchestrator's
        dialer = SealedDialer(host, port, key)
        host, port = "127.0.0.1", await dialer.start()
    reader, writer = await asyncio.open_connection(host, port)
    nodelay(writer)
    writer.write(b"P")
    rtt = []
    for i in range(WARM + PINGS):
        t0 = time.perf_counter()
        writer.write(bytes(REQ))
        await reader.readexactly(REPLY)
        if i >= WARM:
            rtt.append((time.perf_counter() - t0) * 1e6)
    writer.close()
    mibs = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection(host, port)
        nodelay(writer)
        t0 = time.perf_counter()
        writer.write(b"B")
        for _ in range(BULK // BLOCK):
            writer.write(bytes(BLOCK))
            await writer.drain()
        writer.write_eof()
        got = int.from_bytes(await reader.readexactly(8), "big")
        mibs.append(BULK / MIB / (time.perf_counter() - t0))
        writer.close()
        assert got == BULK, got
    return {"mibs": mibs, "rtt_us": rtt}


def wg_up(spec: dict[str, str]) -> None:
    """One wireguard-go interface in this namespace (pyroute2's sync API: no asyncio loop here)."""
    from hearth.tunnel.wireguard import WgPeer, WireGuardInterface

    wg = WireGuardInterface(spec["name"], spec["key"], spec["address"], int(spec["port"]), Path(spec["log"]))
    wg.up()
    wg.set_peers([WgPeer(spec["peer_key"], spec["peer_address"], spec["endpoint"])])


def netns(ns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv] if ns else argv


@dataclass
class Box:
    """One "machine": a namespace (None: this one) and a data folder."""

    ns: str | None
    home: Path
    extra: dict[str, str]

    def argv(self, *args: str) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
        env.update(HEARTH_HOME=str(self.home), HEARTH_N_CTX="1024", HEARTH_N_THREADS="1", COLUMNS="200",
                   PYTHONUNBUFFERED="1", **self.extra)  # unbuffered: the pairing code is read from a log
        return {"args": netns(self.ns, [*HEARTH, *args]), "env": env, "text": True}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(**self.argv(*args), capture_output=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"hearth {' '.join(args)} failed ({r.returncode}):\n{r.stderr}{r.stdout}")
        return r

    def spawn(self, procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
        with (self.home / f"{args[0]}.log").open("w") as log:
            procs.append(subprocess.Popen(**self.argv(*args), stdout=log, stderr=subprocess.STDOUT))
        return procs[-1]


def pair(host: Box, guest: Box, procs: list[subprocess.Popen[str]], bind: str, port: int, node_port: int) -> None:
    proc = host.spawn(procs, "pair", "--bind", bind, "--port", str(port), "--node-port", str(node_port),
                      "--name", "bee", "--yes")
    log, deadline, code = host.home / "pair.log", time.monotonic() + 30, None
    while code is None:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"no pairing code: {log.read_text()}")
        time.sleep(0.1)
        m = re.search(r"hearth pair (\d+-[a-z]+-[a-z]+)", log.read_text())
        code = m.group(1) if m else None
    time.sleep(0.5)
    guest.run("pair", code, "--to", f"{bind}:{port}", "--name", "ant", "--yes")
    if proc.wait(30) != 0:
        raise RuntimeError(log.read_text())


def phase(label: str, box: Box, runs: int, tokens: int, *pooled: str) -> Phase:
    """`runs` rounds of a solo and a pooled `hearth run --json` (order alternating): ms/token from its
    decode tokens/s, and the split it reported."""
    got: dict[bool, list[float]] = {True: [], False: []}
    splits = set()
    for i in range(runs):
        for solo in ((True, False) if i % 2 == 0 else (False, True)):
            r = box.run("run", PROMPT, "--temperature", "0", "-n", str(tokens), "--json",
                        *(("--radius", "machine") if solo else pooled))
            d = json.loads(r.stdout)
            if d["completion_tokens"] != tokens:
                raise RuntimeError(f"{d['completion_tokens']} tokens instead of {tokens}: {d}")
            got[solo].append(1000 / d["tokens_per_s"])
            m = re.search(r"split across the household \((.*?)\)", " ".join(r.stderr.split()))
            splits |= set() if solo else {m.group(1) if m else "not split"}
    print(f"{label}: solo {got[True]}, pooled {got[False]}, split {splits}", file=sys.stderr)
    return label, got[True], got[False], "; ".join(sorted(splits))


def streams(tmp: Path, a1: str, a2: str, procs: list[subprocess.Popen[str]]) -> list[Flow]:
    from hearth.tunnel.wireguard import load_or_create_key, public_key

    me = [sys.executable, str(Path(__file__).resolve())]
    key = lease_key(secrets.token_bytes(32), "bench").hex()
    ns1, ns2 = f"{PREFIX}1", f"{PREFIX}2"
    keys = [load_or_create_key(tmp / f"wg{i}") for i in (1, 2)]
    for i, (ns, peer) in enumerate(((ns1, a2), (ns2, a1))):
        spec = {"name": f"{PREFIX}g{i + 1}", "key": keys[i], "address": f"{WG_NET}.{i + 1}", "port": "51821",
                "log": str(tmp / f"wg{i + 1}.log"), "peer_key": public_key(keys[1 - i]),
                "peer_address": f"{WG_NET}.{2 - i}", "endpoint": f"{peer}:51821"}
        subprocess.run(netns(ns, [*me, "--wg-up", json.dumps(spec)]), check=True, timeout=30)
    servers: dict[str | None, Any] = {}
    for where, binds, gate in ((None, "127.0.0.1", "127.0.0.1"), (ns2, f"127.0.0.1,{a2},{WG_NET}.2", a2)):
        procs.append(subprocess.Popen(netns(where, [*me, "--serve", binds, "--gate", gate, "--key", key]),
                                      stdout=subprocess.PIPE, text=True))
        servers[where] = json.loads(procs[-1].stdout.readline())  # type: ignore[union-attr]
    lo, far = servers[None], servers[ns2]
    cases: list[tuple[str, str | None, str, int, bool]] = [
        ("loopback, plain TCP", None, "127.0.0.1", lo["ports"]["127.0.0.1"], False),
        ("loopback, sealed tunnel", None, "127.0.0.1", lo["gate"], True),
        ("namespaces, plain TCP", ns1, a2, far["ports"][a2], False),
        ("namespaces, sealed tunnel", ns1, a2, far["gate"], True),
        ("namespaces, TCP through WireGuard", ns1, f"{WG_NET}.2", far["ports"][f"{WG_NET}.2"], False)]
    out = []
    for label, where, host, port, sealed in cases:
        argv = [*me, "--client", host, str(port), *(["--key", key] if sealed else [])]
        result = json.loads(subprocess.run(netns(where, argv), check=True, capture_output=True, text=True,
                                           timeout=300).stdout)
        print(f"{label}: {[round(x) for x in result['mibs']]} MiB/s, rtt median {med(result['rtt_us']):.0f} us",
              file=sys.stderr)
        out.append((label, result))
    for i, ns in enumerate((ns1, ns2), 1):  # wireguard-go exits with its interface
        subprocess.run(["ip", "-n", ns, "link", "del", f"{PREFIX}g{i}"], check=False)
    return out


def models(tmp: Path, runs: int, tokens: int, a2: str, procs: list[subprocess.Popen[str]]) -> list[Phase]:
    base = Box(None, tmp / "base", {})
    base.home.mkdir()
    base.run("run", "--radius", "machine", "-n", "1", "hi")  # imports the model into base/models

    def machine(ns: str | None, name: str, linked: bool, **extra: str) -> Box:
        box = Box(ns, tmp / name, extra)
        box.home.mkdir()
        if linked:
            (box.home / "models").symlink_to(base.home / "models")
        return box

    def pooled(label: str, ant: Box, bee: Box, url: str, node: list[str], run: list[str]) -> Phase:
        proc = bee.spawn(procs, "node", "--name", "bee", "--max-memory", "100M", *node)
        code, deadline = f"import httpx; httpx.get({url!r}, timeout=1)", time.monotonic() + 60  # 401 will do
        while subprocess.run(netns(ant.ns, [sys.executable, "-c", code]), capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer; see {bee.home}/node.log")
            time.sleep(0.3)
        try:
            return phase(label, ant, runs, tokens, "--pool", *run)
        finally:
            proc.terminate()
            proc.wait(15)

    ns1, ns2 = f"{PREFIX}1", f"{PREFIX}2"
    ant, bee = machine(ns1, "hh-ant", True), machine(ns2, "hh-bee", False)  # household: unpaired, plain relay
    results = [pooled("household, plain relay (namespaces)", ant, bee, f"http://{a2}:{DEFAULT_NODE_PORT}{STATUS}",
                      ["--bind", a2], ["--peer", f"{a2}:{DEFAULT_NODE_PORT}"])]
    # trusted, paired by code: as tests/tunnel/test_trusted_lan.py (WireGuard) and test_trusted_sealed.py (loopback)
    for tunnel, where, (n1, n2), bind in (("wireguard", "namespaces", (ns1, ns2), a2),
                                          ("sealed", "namespaces", (ns1, ns2), a2),
                                          ("sealed", "loopback", (None, None), "127.0.0.1")):
        ant = machine(n1, f"{tunnel}-{where}-ant", True, HEARTH_TUNNEL=tunnel, HEARTH_WG_INTERFACE=f"{PREFIX}w1")
        bee = machine(n2, f"{tunnel}-{where}-bee", False, HEARTH_TUNNEL=tunnel, HEARTH_WG_INTERFACE=f"{PREFIX}w2")
        pair_port, node_port = (DEFAULT_PAIR_PORT, DEFAULT_NODE_PORT) if n1 else (free_port(), free_port())
        pair(bee, ant, procs, bind, pair_port, node_port)
        peer = json.loads((ant.home / "trust" / "peers.json").read_text())[0]["info"]
        host = peer["tunnel_address"] if tunnel == "wireguard" else bind
        label = f"trusted, {'WireGuard' if tunnel == 'wireguard' else 'sealed tunnel'} ({where})"
        results.append(pooled(label, ant, bee, f"http://{host}:{node_port}{STATUS}",
                              ["--bind", bind, "--port", str(node_port), "--admit", "trusted"], ["--radius", "trusted"]))
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sweep(marker: str) -> None:
    """Kill what is left of this run's processes (RPC servers, engines: their command lines name tmp)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes() and int(pid) != os.getpid():
                os.kill(int(pid), 9)


def cpu_times() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]


def report(args: argparse.Namespace, flows: list[Flow], phases: list[Phase], load: float, cpu: list[int]) -> str:
    plain = {"loopback": med(flows[0][1]["rtt_us"]), "namespaces": med(flows[2][1]["rtt_us"])}
    lines = ["| path | throughput MiB/s | round trip median µs | p90 µs | added per round trip vs plain TCP |",
             "|---|---|---|---|---|"]
    for label, r in flows:
        rtt = sorted(r["rtt_us"])
        extra = med(rtt) - plain[label.split(",")[0]]
        lines.append(f"| {label} | {med(r['mibs']):.0f} | {med(rtt):.0f} | {rtt[len(rtt) * 9 // 10]:.0f} | "
                     f"{'-' if extra == 0 else f'{extra:+.0f} µs'} |")
    solo = [x for p in phases for x in p[1]]
    added = [(label, RTS * (med(r["rtt_us"]) - plain[label.split(",")[0]]) / 1000) for label, r in flows
             if "plain" not in label]
    tok = ["| path | split (layers) | ms/token | tokens/s | cost vs solo, ms/token |", "|---|---|---|---|---|",
           f"| solo (`--radius machine`) | - | {med(solo):.2f} | {1000 / med(solo):.1f} | - |"]
    for label, paired, pool, split in phases:
        diff = med([a - b for a, b in zip(pool, paired, strict=True)])
        tok.append(f"| {label} | {split} | {med(pool):.2f} | {1000 / med(pool):.1f} | **{diff:+.2f}** |")
    raw = [f"- {label}, ms/token solo/pooled per round: "
           + ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(s, p, strict=True)) for label, s, p, _ in phases]
    raw += [f"- {label}, MiB/s per run: " + ", ".join(f"{x:.0f}" for x in r["mibs"]) for label, r in flows]
    return "\n".join([
        "## Sealed tunnel vs WireGuard vs plain TCP (`scripts/bench_tunnel.py`)", "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, {os.cpu_count()} "
        f"cores, a VM other test runs may share (1-minute load average before the run {load:.2f}; CPU steal during "
        f"it {cpu[7] / sum(cpu):.1%}), "
        f"Python {platform.python_version()}: `sudo .venv/bin/python scripts/bench_tunnel.py --runs {args.runs} "
        f"--tokens {args.tokens}`. \"Namespaces\": two network namespaces on a bridge (veth pairs); WireGuard: "
        "Debian's wireguard-go (userspace).", "",
        "### Byte streams", "",
        "A Python asyncio sender and sink in separate processes; with the sealed tunnel the dialer runs in the "
        "sender's process and the gate in the sink's (as on an orchestrator and a node). Throughput: "
        f"{BULK // MIB} MiB one way, median of 3. Round trip: a {REQ // 1024} KiB request and a {REPLY} B reply, "
        f"{PINGS} of them after {WARM} warm-up.", "", *lines, "",
        "### Per token with the model", "",
        f"SmolLM2-135M-Instruct Q4_1, `hearth run \"{PROMPT}\" --temperature 0 -n {args.tokens} --json` (its "
        "decode tokens/s), 1 thread in every process, n_ctx 1024, the second node `--max-memory 100M`, `--pool`. "
        f"Per path {args.runs} rounds of one solo and one pooled run (order alternating); the cost is the median "
        "of the per-round differences; the solo row is the median of every solo run.", "",
        *tok, "",
        f"At about {RTS} round trips per token per node (`scripts/bench_rpc.py`), the tunnels' round trips alone add "
        + ", ".join(f"{ms:.2f} ms/token ({label})" for label, ms in added) + " over plain TCP; compare the spread "
        f"of the solo runs alone on this VM, {min(solo):.1f}-{max(solo):.1f} ms/token.", "", *raw,
    ])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    for flag in ("--serve", "--gate", "--key", "--wg-up"):
        ap.add_argument(flag, help=argparse.SUPPRESS)
    ap.add_argument("--client", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    key = bytes.fromhex(args.key) if args.key else None
    if args.serve or args.client or args.wg_up:  # a helper, started by the run below
        if args.serve:
            asyncio.run(serve(args.serve.split(","), args.gate, key or b""))
        elif args.client:
            print(json.dumps(asyncio.run(client(args.client[0], int(args.client[1]), key))))
        else:
            wg_up(json.loads(args.wg_up))
        return 0
    if os.geteuid() != 0 or shutil.which("wireguard-go") is None:
        print("needs root (network namespaces) and wireguard-go", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="hearth-bench-tunnel-"))
    procs: list[subprocess.Popen[str]] = []
    load, cpu0, ok = os.getloadavg()[0], cpu_times(), False
    try:
        lan.down(PREFIX)  # whatever a killed earlier run left
        (_, a1), (_, a2) = lan.up(2, PREFIX)
        flows = streams(tmp, a1, a2, procs)
        phases = models(tmp, args.runs, args.tokens, a2, procs)
        ok = True
    finally:
        for p in procs:
            p.kill()
            p.wait()
        sweep(str(tmp))
        lan.down(PREFIX)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}", file=sys.stderr)
    cpu = [b - a for a, b in zip(cpu0, cpu_times(), strict=True)]
    print(write_section(args.out, "bench_tunnel", report(args, flows, phases, load, cpu)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
