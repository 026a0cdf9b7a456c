#!/usr/bin/env python3
"""Do the coordinator's rate limits hold under a flood, and do other clients keep their latency? (issue 11)

A real `hearth coordinator` process (SQLite) with known limits. Two flooders, each its own process
and its own loopback address, send 10x the limit that binds them for `--seconds`:
- "signed": requests signed by one identity from 127.0.0.2 (GET /v1/credits): its identity's bucket
  binds (the identity rate is below the address rate);
- "unsigned": no signature from 127.0.0.3 (GET /v1/prices): its address's bucket binds.
Meanwhile `--clients` normal clients, each with its own identity and loopback address (127.0.0.10+),
send signed GET /v1/credits at `--client-rps`, before the flood (`--before` seconds) and during it.
Reported: the share of each flooder's excess (requests sent beyond burst + rate x seconds) answered
429, and the normal clients' latency p50/p99 before and during; into docs/benchmarks.md.

    .venv/bin/python scripts/bench_limits.py [--seconds 60] [--before 30] [--identity-rate 2] [--address-rate 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from benchdoc import write_section  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from hearth.identity import NodeIdentity  # noqa: E402
from hearth.pairing.signed import SignedAuth  # noqa: E402


def identity(seed: int) -> NodeIdentity:
    return NodeIdentity(SigningKey(bytes([seed]) * 32))


def client(url: str, address: str, seed: int | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, transport=httpx.AsyncHTTPTransport(local_address=address),
                             auth=SignedAuth(identity(seed)) if seed is not None else None, timeout=30,
                             limits=httpx.Limits(max_connections=400, max_keepalive_connections=400))


async def paced(c: httpx.AsyncClient, path: str, rps: float, seconds: float,
                out: list[tuple[float, float, int]]) -> None:
    """Open-loop: one request every 1/rps s for `seconds`, each in its own task (a slow answer does
    not slow the sender); (start, latency, status or -1) per request."""

    async def one(at: float) -> None:
        try:
            status = (await c.get(path)).status_code
        except httpx.HTTPError:
            status = -1
        out.append((at, time.monotonic() - at, status))

    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    i = 0
    while (due := start + i / rps) < start + seconds:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(one(time.monotonic()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.wait(tasks)


def flood(url: str, address: str, seed: int, path: str, rps: float, seconds: float) -> None:
    """The flooder's process: prints its status counts as JSON."""
    out: list[tuple[float, float, int]] = []

    async def main() -> None:
        async with client(url, address, seed if seed >= 0 else None) as c:
            await paced(c, path, rps, seconds, out)

    asyncio.run(main())
    print(json.dumps({"sent": len(out), "statuses": Counter(str(s) for _, _, s in out)}))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def normal_clients(url: str, n: int, rps: float, seconds: float) -> list[tuple[float, float, int]]:
    out: list[tuple[float, float, int]] = []
    clients = [client(url, f"127.0.0.{10 + i}", 50 + i) for i in range(n)]
    try:
        for c in clients:  # the first signed request of each gets its welcome grant: not measured
            (await c.get("/v1/credits")).raise_for_status()
        await asyncio.gather(*(paced(c, "/v1/credits", rps, seconds, out) for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    return out


def run(args: argparse.Namespace) -> str:
    from tests.public_swarm.coordinator_proc import coordinator

    limits = ["--address-rate", str(args.address_rate), "--address-burst", str(args.address_burst),
              "--identity-rate", str(args.identity_rate), "--identity-burst", str(args.identity_burst)]
    floods = {"signed": ("127.0.0.2", 7, "/v1/credits", args.identity_rate, args.identity_burst),
              "unsigned": ("127.0.0.3", -1, "/v1/prices", args.address_rate, args.address_burst)}
    with tempfile.TemporaryDirectory(prefix="hearth-limits-") as tmp, coordinator(Path(tmp), None, *limits) as coord:
        t0 = time.monotonic()

        async def measure() -> list[tuple[float, float, int]]:
            return await normal_clients(coord.url, args.clients, args.client_rps, args.before + args.seconds + 2)

        procs: dict[str, subprocess.Popen[str]] = {}

        async def flooding() -> None:
            await asyncio.sleep(args.before)
            for name, (address, seed, path, rate, _burst) in floods.items():
                procs[name] = subprocess.Popen(  # niced: in life the flood's client CPU is another machine's
                    [sys.executable, __file__, "--flood", coord.url, address, str(seed), path, str(10 * rate),
                     str(args.seconds)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                    preexec_fn=lambda: os.nice(args.nice))

        async def both() -> list[tuple[float, float, int]]:
            samples, _ = await asyncio.gather(measure(), flooding())
            return samples

        samples = asyncio.run(both())
        flood_start = t0 + args.before
        results = {name: json.loads(p.communicate(timeout=120)[0]) for name, p in procs.items()}
    lines = ["## Rate limits under a flood (`scripts/bench_limits.py`)", "",
             f"Command: `.venv/bin/python scripts/bench_limits.py --seconds {args.seconds:g} --before {args.before:g} "
             f"--identity-rate {args.identity_rate:g} --address-rate {args.address_rate:g} --nice {args.nice}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other work), Python "
             f"{platform.python_version()}; one real `hearth coordinator` on SQLite with `{' '.join(limits)}`.",
             "", "Every client comes from its own loopback address (127.0.0.x); the signed flooder and the normal "
             "clients sign with their own identities, so the per-identity and per-address buckets are both "
             "exercised. All run on this one machine; the flooders' processes run at niceness "
             f"{args.nice} (in life their CPU is their own machines', not the coordinator's).", "",
             "| flooder | limit that binds | sent (10x) | admitted | 429 | other | excess | 429 share of excess |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        _a, _s, _p, rate, burst = floods[name]
        st = Counter(r["statuses"])
        allowed = burst + rate * args.seconds
        excess = max(1.0, r["sent"] - allowed)
        other = r["sent"] - st["200"] - st["429"]
        lines.append(f"| {name} | {'identity' if name == 'signed' else 'address'} {rate:g}/s burst {burst} | "
                     f"{r['sent']} | {st['200']} | {st['429']} | {other} | {excess:.0f} | "
                     f"{min(100.0, 100 * st['429'] / excess):.2f} % |")
    before = [lat for at, lat, s in samples if at < flood_start and s == 200]
    during = [lat for at, lat, s in samples if flood_start + 1 <= at < flood_start + args.seconds and s == 200]
    bad = Counter(s for _, _, s in samples if s != 200)
    lines += ["", f"Normal clients: {args.clients}, each {args.client_rps:g} signed requests/s "
                  f"(GET /v1/credits); statuses other than 200: {dict(bad) or 'none'}.", "",
              "| phase | requests | p50 ms | p99 ms | mean ms |", "|---|---:|---:|---:|---:|",
              f"| before the flood | {len(before)} | {pct(before, .5):.1f} | {pct(before, .99):.1f} | "
              f"{1000 * statistics.fmean(before or [0]):.1f} |",
              f"| during the flood | {len(during)} | {pct(during, .5):.1f} | {pct(during, .99):.1f} | "
              f"{1000 * statistics.fmean(during or [0]):.1f} |"]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--flood":
        url, address, seed, path, rps, seconds = sys.argv[2:8]
        flood(url, address, int(seed), path, float(rps), float(seconds))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--before", type=float, default=30)
    parser.add_argument("--identity-rate", type=float, default=2)
    parser.add_argument("--identity-burst", type=int, default=5)
    parser.add_argument("--address-rate", type=float, default=5)
    parser.add_argument("--address-burst", type=int, default=10)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--client-rps", type=float, default=1)
    parser.add_argument("--nice", type=int, default=10, help="the flooders' niceness (0: same priority)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = parser.parse_args()
    text = run(args)
    print(text)
    if not args.no_write:
        write_section(REPO / "docs" / "benchmarks.md", "bench_limits", text)


if __name__ == "__main__":
    main()
