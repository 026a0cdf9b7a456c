#!/usr/bin/env python3
"""A household on one machine: N network namespaces on a private bridge, each a "machine".

    sudo python scripts/lan.py up 3              # namespaces hth1..hth3 at 10.77.0.1..3 (+ switch hthsw)
    sudo python scripts/lan.py exec 2 -- .venv/bin/hearth node --bind 10.77.0.2 --max-memory 2G
    sudo python scripts/lan.py down              # kills what runs inside, removes everything

The bridge lives in its own namespace (hthsw), so the machine's real network is never touched;
multicast (mDNS) crosses the bridge like on a home LAN. Needs root (ip netns).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def ns_name(prefix: str, i: int) -> str:
    return f"{prefix}{i}"


def address(subnet: str, i: int) -> str:
    return f"{subnet}.{i}"


def existing(prefix: str) -> list[str]:
    out = sh("ip", "netns", "list").stdout.split("\n")
    names = [line.split()[0] for line in out if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def up(n: int, prefix: str = "hth", subnet: str = "10.77.0") -> list[tuple[str, str]]:
    """Create the switch and n machines; return [(namespace, address)]."""
    if len(prefix) > 6:
        raise SystemExit("prefix: at most 6 characters (interface names are short)")
    switch = f"{prefix}sw"
    sh("ip", "netns", "add", switch)
    sh("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", switch, "link", "set", "br0", "up")
    machines = []
    for i in range(1, n + 1):
        ns = ns_name(prefix, i)
        port = f"{prefix}p{i}"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", switch)
        sh("ip", "-n", switch, "link", "set", port, "master", "br0")
        sh("ip", "-n", switch, "link", "set", port, "up")
        addr = address(subnet, i)
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")  # mDNS goes out on the LAN
        machines.append((ns, addr))
    return machines


def pids(ns: str) -> list[int]:
    out = sh("ip", "netns", "pids", ns, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def _signal_all(names: list[str], sig: signal.Signals) -> None:
    for ns in names:
        for pid in pids(ns):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass


def down(prefix: str = "hth") -> None:
    """Stop every process in the namespaces (TERM, then KILL after 5 s), then delete them.
    Safe to call twice."""
    names = existing(prefix)
    _signal_all(names, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while any(pids(ns) for ns in names) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal_all(names, signal.SIGKILL)
    for ns in names:
        sh("ip", "netns", "del", ns, check=False)


def exec_in(prefix: str, i: int, argv: list[str]) -> int:
    return subprocess.call(["ip", "netns", "exec", ns_name(prefix, i), *argv])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default="hth", help="namespace name prefix (at most 6 characters)")
    ap.add_argument("--subnet", default="10.77.0", help="first three octets of the machines' addresses")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="create N machines")
    p_up.add_argument("n", type=int)
    p_exec = sub.add_parser("exec", help="run a command on machine I")
    p_exec.add_argument("i", type=int)
    p_exec.add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("down", help="tear everything down")
    sub.add_parser("list", help="show the machines")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("lan.py needs root (ip netns).", file=sys.stderr)
        return 2
    if args.cmd == "up":
        if not 1 <= args.n <= 50:
            print("n: 1 to 50 machines", file=sys.stderr)
            return 2
        for ns, addr in up(args.n, args.prefix, args.subnet):
            print(f"{ns}\t{addr}")
        return 0
    if args.cmd == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        return exec_in(args.prefix, args.i, argv)
    if args.cmd == "down":
        down(args.prefix)
        return 0
    for ns in existing(args.prefix):
        print(ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
