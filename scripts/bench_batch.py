#!/usr/bin/env python3
"""Many clients at once: hearth against llama.cpp's own llama-server, side by side in one run
(issue 13). For 1, 2, 4 and 8 concurrent streaming clients, the same model (SmolLM2-135M from
hearth's store), the same threads and the same context per slot: `llama-server -np N -c N*ctx`
against `hearth serve` with HEARTH_PARALLEL=N. Each client streams a greedy chat with its own
prompt and a fixed max_tokens; all start together. Measured per round: aggregate decode tokens/s
(tokens after each client's first, over the wall time from the first first token to the last
token) and each client's time to first token (request sent to first content chunk).

--rpc adds the pooled variant (root needed): llama-server --rpc over 2 llama.cpp rpc-servers
against `hearth serve --pool` over 2 `hearth node` agents, the servers in one private network
namespace and the RPC side in another, joined by TUN devices that this script relays with a 2 ms
one-way delay (this kernel has no netem). The namespaces and every process are removed at the
end, also on failure. Results, with the command, go to docs/benchmarks.md (bench_batch).

    bash ../shared/anchors/build-llama-tools.sh     # builds llama-server and rpc-server once
    sudo .venv/bin/python scripts/bench_batch.py [--clients 1,2,4,8] [--tokens 64] [--rounds 3] [--rpc]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import math
import os
import platform
import queue
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from benchdoc import write_section  # noqa: E402

MODEL = "smollm2-135m"
HEARTH = [sys.executable, "-m", "hearth.cli.main"]
TOOLS = Path(os.environ.get("LLAMA_TOOLS", Path.home() / ".cache" / "hearth" / "llama-tools")) / "bin"
DELAY_MS = 2
TOPICS = ["a lighthouse keeper", "a lost dog", "a city under the sea", "a clockmaker", "a dragon who bakes",
          "the first winter on Mars", "a river that flows uphill", "a library that never closes",
          "two rival chefs", "a robot gardener", "a storm at sea", "an old violin"]
SERVERS = ("llama-server", "hearth")


@dataclass
class Stream:
    ttft: float
    first: float
    last: float
    tokens: int


@dataclass
class Cell:
    """One server at one concurrency: per-round aggregates and every client's time to first token."""

    aggregate: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    throughput: list[float] = field(default_factory=list)
    """Per round: every completion token over the time from the first request sent to the last token."""


Results = dict[str, dict[str, Cell]]
"""server -> str(clients) -> Cell (string keys: it goes through JSON from the namespace)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with few samples, an observed value, never a blend."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]


def prompt(round_no: int, client: int, clients: int) -> str:
    """Distinct per client and per round, so no server answers from a cached prompt."""
    k = round_no * clients + client
    return f"Story {k}. Write a long story about {TOPICS[k % len(TOPICS)]}."


# -- clients ---------------------------------------------------------------------------------
async def one_stream(client: httpx.AsyncClient, url: str, text: str, tokens: int,
                     extra: dict[str, Any] | None = None) -> Stream:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, **(extra or {})}
    sent = time.perf_counter()
    first = last = 0.0
    chunks = 0
    usage: int | None = None
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as answer:
        if answer.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {answer.status_code}: {(await answer.aread())[:300]!r}")
        async for line in answer.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk: dict[str, Any] = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"{url}: {chunk['error']}")
            if chunk.get("usage"):
                usage = int(chunk["usage"]["completion_tokens"])
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    last = time.perf_counter()
                    first = first or last
                    chunks += 1
    if not chunks:
        raise RuntimeError(f"{url}: a stream with no content")
    return Stream(first - sent, first, last, usage if usage is not None else chunks)


async def burst(url: str, texts: list[str], tokens: int,
                extra: dict[str, Any] | None = None) -> tuple[float, list[float], float]:
    """All clients at once; the aggregate decode tokens/s, each client's time to first token, and
    the end-to-end throughput (all tokens over the burst's wall time, prompts included)."""
    limits = httpx.Limits(max_connections=len(texts) + 2, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=httpx.Timeout(900.0), limits=limits) as client:
        streams = await asyncio.gather(*(one_stream(client, url, t, tokens, extra) for t in texts))
    window = max(s.last for s in streams) - min(s.first for s in streams)
    decoded = sum(s.tokens - 1 for s in streams)
    wall = max(s.last for s in streams) - min(s.first - s.ttft for s in streams)
    return ((decoded / window if window > 0 else 0.0), [s.ttft for s in streams],
            sum(s.tokens for s in streams) / wall if wall > 0 else 0.0)


# -- processes -------------------------------------------------------------------------------
class Procs:
    """Every process this run starts, each in its own session so that stopping its group also
    stops what it started (hearth's engine child, a node's RPC servers)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                    start_new_session=True)
        self.running.append(proc)
        return proc, log

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGINT to its group (hearth shuts down cleanly, releasing leases), SIGKILL after 15 s."""
        for sig, wait in ((signal.SIGINT, 15.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # what the leader left behind in its group
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 300,
              any_answer: bool = False) -> None:
    """Until `url` answers 200 (llama-server's /health says 503 while loading), or anything."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200 or any_answer:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{url} did not come up (exit {proc.poll()}); {log}:\n{tail}")
        time.sleep(0.2)


def hearth_env(home: Path, threads: int, ctx: int, parallel: int, reuse: str = "exact") -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    return {**base, "HEARTH_HOME": str(home), "HEARTH_N_CTX": str(ctx), "HEARTH_N_THREADS": str(threads),
            "HEARTH_PARALLEL": str(parallel), "HEARTH_MAX_QUEUE": "64", "HEARTH_PROMPT_REUSE": reuse,
            "PYTHONUNBUFFERED": "1"}


@dataclass
class Setup:
    """What both servers share at one concurrency, and the pooled extras."""

    gguf: Path
    home: Path
    threads: int
    ctx: int
    rpc_servers: list[str] = field(default_factory=list)
    """host:port of llama.cpp rpc-servers, for llama-server --rpc."""
    hearth_peers: list[str] = field(default_factory=list)
    """host:port of `hearth node` agents, for hearth serve --pool."""
    layout: str = ""
    """hearth's split as its status shows it (pooled)."""
    ngl: int = 20
    """llama-server's layers on the RPC servers, output head included (the first ones stay here)."""
    no_reuse: bool = False
    """llama-server's requests with cache_prompt false (--llama-no-reuse)."""
    reuse: str = "exact"
    """hearth's HEARTH_PROMPT_REUSE (--hearth-reuse)."""


def start_llama(procs: Procs, s: Setup, n: int) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    argv = [str(TOOLS / "llama-server"), "-m", str(s.gguf), "--host", "127.0.0.1", "--port", str(port),
            "-t", str(s.threads), "-tb", str(s.threads), "-np", str(n), "-c", str(s.ctx * n), "--no-webui"]
    if s.rpc_servers:
        argv += ["--rpc", ",".join(s.rpc_servers), "-ngl", str(s.ngl), "-ts", ",".join("1" for _ in s.rpc_servers)]
    proc, log = procs.start(f"llama-server-np{n}", argv, dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health", proc, log)
    return url, proc


def start_hearth(procs: Procs, s: Setup, n: int) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    argv = [*HEARTH, "serve", "--port", str(port), "--model", MODEL]
    if s.hearth_peers:
        argv += ["--pool", *(arg for peer in s.hearth_peers for arg in ("--peer", peer))]
    proc, log = procs.start(f"hearth-serve-p{n}", argv, hearth_env(s.home, s.threads, s.ctx, n, s.reuse))
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/hearth/status", proc, log)
    return url, proc


def layout(url: str) -> str:
    """hearth's layer map, e.g. 'layers 0-9 bench0, 10-19 bench1, 20-29 here; output head here'."""
    status: dict[str, Any] = httpx.get(url + "/hearth/status", timeout=10).json()
    lmap = status.get("layer_map") or {}
    spans = [f"{sp['first']}-{sp['first'] + sp['count'] - 1} {'this machine' if sp['local'] else sp['name']}"
             for sp in lmap.get("spans", [])]
    here = [sp["node_id"] for sp in lmap.get("spans", []) if sp["local"]]
    head = "this machine" if lmap.get("output_node") in here else str(lmap.get("output_node"))
    return f"layers {', '.join(spans)}; output head: {head}" if spans else "no layer map in the status"


def measure(procs: Procs, s: Setup, clients: list[int], tokens: int, rounds: int) -> Results:
    """Both servers up at each concurrency; rounds alternate which one goes first."""
    results: Results = {name: {} for name in SERVERS}
    for n in clients:
        urls: dict[str, str] = {}
        started: list[subprocess.Popen[bytes]] = []
        try:
            for name, starter in (("llama-server", start_llama), ("hearth", start_hearth)):
                url, proc = starter(procs, s, n)
                urls[name] = url
                started.append(proc)
                asyncio.run(burst(url, ["Say hello."], 8))  # warm-up (hearth: also waits for the load)
            if s.hearth_peers and not s.layout:
                s.layout = layout(urls["hearth"])
            for r in range(rounds):
                texts = [prompt(r, c, n) for c in range(n)]
                for name in SERVERS if r % 2 == 0 else tuple(reversed(SERVERS)):
                    extra = {"cache_prompt": False} if name == "llama-server" and s.no_reuse else None
                    agg, ttfts, through = asyncio.run(burst(urls[name], texts, tokens, extra))
                    cell = results[name].setdefault(str(n), Cell())
                    cell.aggregate.append(agg)
                    cell.throughput.append(through)
                    cell.ttft.extend(ttfts)
                    print(f"{n} client(s), round {r + 1}, {name}: {agg:.1f} tok/s, time to first token "
                          f"max {max(ttfts):.2f} s", flush=True)
        finally:
            for proc in started:
                procs.stop(proc)
    return results


# -- the pooled variant: two namespaces joined by a delaying wire ----------------------------------
HERE, THERE = "10.88.0.1", "10.88.0.2"
"""This machine's address (servers, clients) and the other machines' (RPC servers, hearth nodes)."""


class Wire:
    """Two TUN devices, one in each namespace, joined by this process: every IP packet crosses
    `delay_ms` later (this kernel has no netem). A reader thread per direction stamps packets, a
    writer thread releases each when due, so the delay adds to, and does not serialise, traffic."""

    TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000

    def __init__(self, names: tuple[str, str], delay_ms: float = DELAY_MS) -> None:
        self.names = names
        self.delay_ms = delay_ms
        """Read at each packet: a run may change it between measurements."""
        self.fds = [self._open(n) for n in names]
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def _open(self, name: str) -> int:
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, self.TUNSETIFF, struct.pack("16sH", name.encode(), self.IFF_TUN | self.IFF_NO_PI))
        return fd

    def start(self) -> None:
        for src, dst in ((0, 1), (1, 0)):
            due: queue.Queue[tuple[float, bytes]] = queue.Queue()
            self.threads += [threading.Thread(target=self._read, args=(self.fds[src], due), daemon=True),
                             threading.Thread(target=self._write, args=(self.fds[dst], due), daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, fd: int, due: queue.Queue[tuple[float, bytes]]) -> None:
        while not self.stopping.is_set():
            try:
                packet = os.read(fd, 70000)
            except OSError:
                return
            due.put((time.monotonic() + self.delay_ms / 1000, packet))

    def _write(self, fd: int, due: queue.Queue[tuple[float, bytes]]) -> None:
        while not self.stopping.is_set():
            try:
                at, packet = due.get(timeout=0.2)
            except queue.Empty:
                continue
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with contextlib.suppress(OSError):
                os.write(fd, packet)

    def close(self) -> None:
        self.stopping.set()
        for fd in self.fds:
            os.close(fd)


def pooled(args: argparse.Namespace, gguf: Path, home: Path, tmp: Path) -> tuple[Results, str]:
    """Run in the near namespace: 2 rpc-servers and 2 hearth nodes in the far one, at THERE."""
    procs = Procs(tmp)
    far = ["ip", "netns", "exec", args.far]
    try:
        rpc = []
        for i in range(2):
            port = free_port()
            procs.start(f"rpc-server{i}", [*far, str(TOOLS / "rpc-server"), "-H", THERE, "-p", str(port),
                                           "-t", str(args.threads)], dict(os.environ))
            rpc.append(f"{THERE}:{port}")
        peers = []
        for i in range(2):
            port = free_port()
            node_home = tmp / f"node{i}"
            node_home.mkdir()
            proc, log = procs.start(f"hearth-node{i}", [*far, *HEARTH, "node", "--bind", THERE, "--port", str(port),
                                                        "--name", f"bench{i}"],
                                    hearth_env(node_home, args.threads, args.ctx, 1))
            wait_http(f"http://{THERE}:{port}/v1/node", proc, log, timeout=60, any_answer=True)
            peers.append(f"{THERE}:{port}")
        setup = Setup(gguf, home, args.threads, args.ctx, rpc_servers=rpc, hearth_peers=peers, ngl=args.ngl,
                      reuse=args.hearth_reuse)
        results = measure(procs, setup, args.client_list, args.tokens, args.rounds)
        print(f"hearth's split: {setup.layout}", flush=True)
        return results, setup.layout
    finally:
        procs.stop_all()


def sh(*argv: str, check: bool = True) -> None:
    subprocess.run(argv, check=check, capture_output=not check)


def in_namespaces(args: argparse.Namespace, gguf: Path, home: Path,
                  tmp: Path) -> tuple[dict[float, Results], str]:
    """Create two private namespaces (this machine, the others) joined by the delaying wire, run
    this script's pooled part in the first once per delay, and remove both whatever happens
    (killing anything still inside first)."""
    if os.geteuid() != 0:
        raise SystemExit("--rpc needs root (network namespaces and TUN devices)")
    tag = os.getpid() % 100000
    near, far = f"hbn{tag}", f"hbf{tag}"
    out = tmp / "pooled.json"
    wire: Wire | None = None
    made: list[str] = []
    try:
        for ns in (near, far):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        wire = Wire((f"hbn{tag}", f"hbf{tag}"))
        for ns, dev, addr in ((near, f"hbn{tag}", HERE), (far, f"hbf{tag}", THERE)):
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "mtu", "65000", "up")
        # The relay threads run at nice -10 (threads inherit their creator's): on a busy machine a
        # late wake-up would add to the 2 ms. The main thread, and so the servers, go back to 0.
        os.setpriority(os.PRIO_PROCESS, 0, -10)
        wire.start()
        os.setpriority(os.PRIO_PROCESS, 0, 0)
        by_delay: dict[float, Results] = {}
        layout_seen = ""
        for delay in args.delay_list:
            wire.delay_ms = delay
            by_delay[delay], layout_seen = inside(args, near, far, gguf, home, out)
        return by_delay, layout_seen
    finally:
        for ns in made:
            left = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in left:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        if wire is not None:
            wire.close()
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


def inside(args: argparse.Namespace, near: str, far: str, gguf: Path, home: Path, out: Path) -> tuple[Results, str]:
    """This script's pooled part, run in the near namespace; its results and hearth's split."""
    argv = ["ip", "netns", "exec", near, sys.executable, str(Path(__file__).resolve()), "--inside", "--far", far,
            "--gguf", str(gguf), "--home", str(home), "--json-out", str(out), "--hearth-reuse", args.hearth_reuse,
            "--clients", args.clients, "--tokens", str(args.tokens), "--rounds", str(args.rounds),
            "--threads", str(args.threads), "--ctx", str(args.ctx), "--ngl", str(args.ngl)]
    subprocess.run(argv, check=True, start_new_session=True)
    raw: dict[str, Any] = json.loads(out.read_text())
    by_server: dict[str, dict[str, dict[str, list[float]]]] = raw["results"]
    return ({name: {n: Cell(**cell) for n, cell in by_n.items()} for name, by_n in by_server.items()},
            str(raw["layout"]))


# -- the report ------------------------------------------------------------------------------
def table(results: Results, clients: list[int]) -> list[str]:
    lines = ["| clients | llama-server tok/s | hearth tok/s | ratio (target >= 0.9) | end-to-end llama-server / "
             "hearth tok/s | ratio | llama-server TTFT p50 / p95 | hearth TTFT p50 / p95 | p95 ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in clients:
        ls, hs = results["llama-server"][str(n)], results["hearth"][str(n)]
        la, ha = statistics.median(ls.aggregate), statistics.median(hs.aggregate)
        lt = statistics.median(ls.throughput) if ls.throughput else float("nan")
        ht = statistics.median(hs.throughput) if hs.throughput else float("nan")
        lp95, hp95 = percentile(ls.ttft, 95), percentile(hs.ttft, 95)
        lines.append(f"| {n} | {la:.1f} | {ha:.1f} | {ha / la:.2f} | {lt:.1f} / {ht:.1f} | {ht / lt:.2f} | "
                     f"{percentile(ls.ttft, 50):.2f} / {lp95:.2f} s | {percentile(hs.ttft, 50):.2f} / {hp95:.2f} s | "
                     f"{hp95 / lp95:.1f} |")
    return lines


def scaling(results: Results, clients: list[int], server: str) -> str:
    cells = results[server]
    if "1" not in cells or "4" not in cells:
        return ""
    ratio = statistics.median(cells["4"].aggregate) / statistics.median(cells["1"].aggregate)
    return f"{server} at 4 clients / its own single stream: {ratio:.2f}x"


def preamble(args: argparse.Namespace, title: str) -> list[str]:
    command = "sudo .venv/bin/python scripts/bench_batch.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return [
        f"## {title} (`scripts/bench_batch.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, {os.cpu_count()} "
        f"cores, with `{command.strip()}`. {MODEL} (hearth's GGUF), {args.threads} threads, {args.ctx} tokens "
        f"of context per slot (`llama-server -np N -c N*{args.ctx}`; hearth with HEARTH_PARALLEL=N, its context per slot; both with flash attention, llama-server's "
        "default `-fa auto`), greedy "
        f"streamed chats of max {args.tokens} tokens, a distinct prompt per client and round, all clients "
        f"started together; {args.rounds} round(s) per concurrency, alternating which server goes first. "
        "tok/s: the median round's aggregate decode rate (tokens after each client's first, over the time "
        "from the first first token to the last token). End-to-end: every token over the time from the first "
        "request sent to the last token (prompt evaluation included: a step of hearth's evaluates one "
        "64-token prompt chunk of every admitting request, and a request that wakes an idle engine waits up "
        "to 15 ms for the rest of its burst, so that a burst's prompts go in one step and its streams start "
        "together, as llama-server's do). TTFT: request sent to first content chunk, "
        "nearest-rank percentiles over every client of every round. llama-server, rpc-server: llama.cpp "
        "built from the source our llama-cpp-python wheel vendors (`../shared/anchors/build-llama-tools.sh`).",
        "",
    ]


CAVEAT = ("Nothing else ran on the machine during the measurement (a quiet machine is a precondition of "
          "the run: other load on 2 cores moves these figures by tens of percent).")


def report_local(args: argparse.Namespace, local: Results) -> str:
    title = "Many clients at once on one machine, hearth vs llama-server" + (
        " without its token-level prompt reuse (`cache_prompt: false`)" if args.llama_no_reuse else "") + (
        ", hearth with HEARTH_PROMPT_REUSE=tokens" if args.hearth_reuse == "tokens" else "")
    lines = [*preamble(args, title),
             *table(local, args.client_list), "",
             "Targets (issue 13): hearth's aggregate >= 0.9x llama-server's at every concurrency; hearth's p95 "
             "time to first token at 4 clients <= 1.5x llama-server's.", "", CAVEAT]
    return "\n".join(lines)


def ms_per_step(cell: Cell, clients: int) -> float:
    """A decode step's time: every stream gains one token a step."""
    return clients * 1000 / statistics.median(cell.aggregate)


def hop_table(by_delay: dict[float, Results], clients: list[int]) -> list[str]:
    """What the injected delay adds to a decode step, by concurrency: if a step pays the hops once
    for all its sequences, the added time (and the round trips it stands for) does not grow with
    the clients."""
    low, high = min(by_delay), max(by_delay)
    rtt = 2 * (high - low)
    lines = [f"| clients | llama-server ms/step at {low:g} / {high:g} ms | added | round trips/step "
             f"| hearth ms/step at {low:g} / {high:g} ms | added | round trips/step |", "|---|---|---|---|---|---|---|"]
    for n in clients:
        cells = []
        for server in SERVERS:
            a, b = (ms_per_step(by_delay[d][server][str(n)], n) for d in (low, high))
            cells += [f"{a:.1f} / {b:.1f}", f"{b - a:.1f} ms", f"{(b - a) / rtt:.1f}"]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def report_pooled(args: argparse.Namespace, by_delay: dict[float, Results], split: str) -> str:
    main_delay = DELAY_MS if DELAY_MS in by_delay else max(by_delay)
    pool = by_delay[main_delay]
    lines = [
        *preamble(args, f"Many clients at once over 2 RPC nodes with {main_delay:g} ms one-way delay, hearth vs "
                  "llama-server" + (", hearth with HEARTH_PROMPT_REUSE=tokens" if args.hearth_reuse == "tokens" else "")),
        "Two private network namespaces: this machine (both servers, the clients) and the others "
        f"(2 llama.cpp rpc-servers, 2 `hearth node` agents, all on {THERE}), joined by TUN devices "
        f"and a relay in the script that delivers every packet {main_delay:g} ms late (this kernel has no "
        "netem); HTTP stays inside the first namespace, undelayed. llama-server `--rpc` over the 2 "
        f"rpc-servers with `-ngl {args.ngl} -ts 1,1` (llama.cpp counts the output head as a layer and "
        "puts it on the last device: the first layers here, the rest and the head halved between the "
        "servers; it cannot keep the head here with any layer remote) against `hearth serve --pool --peer A "
        f"--peer B` over the 2 nodes (its planner's split, from its status: {split}).",
        "",
        *table(pool, args.client_list),
        "",
        "Target (issue 13): hearth's aggregate at 4 clients >= 2.5x its own single stream. "
        + ("; ".join(x for x in (scaling(pool, args.client_list, s) for s in SERVERS) if x) or "not measured") + ".",
    ]
    for delay in sorted(d for d in by_delay if d != main_delay):
        lines += ["", f"The same with the relay's delay at {delay:g} ms:", "", *table(by_delay[delay], args.client_list),
                  "", "; ".join(x for x in (scaling(by_delay[delay], args.client_list, s) for s in SERVERS) if x) + "."]
    if len(by_delay) > 1:
        lines += ["", "What the delay adds to a decode step (ms/step: clients x 1000 / aggregate tok/s; round trips: "
                  "the added time over the added round-trip time):", "", *hop_table(by_delay, args.client_list)]
    lines += ["", CAVEAT]
    return "\n".join(lines)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="1,2,4,8", help="concurrencies, comma-separated")
    ap.add_argument("--tokens", type=int, default=64, help="max_tokens of every request")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=2048, help="context tokens per slot")
    ap.add_argument("--ngl", type=int, default=20, help="pooled llama-server: layers on the RPC servers, "
                    "the output head counted (20 of SmolLM2's 30+1: about a third on each device, as hearth splits it)")
    ap.add_argument("--llama-no-reuse", action="store_true",
                    help="llama-server requests with cache_prompt false: no reuse of a slot's earlier prompt at "
                         "token granularity, which hearth does not do (it breaks identical greedy text)")
    ap.add_argument("--hearth-reuse", choices=("exact", "tokens"), default="exact",
                    help="hearth's HEARTH_PROMPT_REUSE: exact (its default: whole canonical chunks, the same greedy "
                         "text whatever ran before) or tokens (every shared token, as llama-server's cache_prompt)")
    ap.add_argument("--rpc", action="store_true", help="also the pooled variant (root: a network namespace)")
    ap.add_argument("--no-local", action="store_true", help="skip the one-machine part (with --rpc)")
    ap.add_argument("--delays", default=str(DELAY_MS),
                    help="pooled: the relay's one-way delays in ms, comma-separated; with two or more, a table of "
                         "what the delay adds to a decode step at each concurrency")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--gguf", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--far", help=argparse.SUPPRESS)
    ap.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.client_list = [int(x) for x in args.clients.split(",") if x.strip()]
    args.delay_list = sorted({float(x) for x in args.delays.split(",") if x.strip()})
    if not args.delay_list or min(args.delay_list) < 0 or max(args.delay_list) > 100:
        ap.error("--delays: one or more delays in ms, 0 to 100")
    if not args.client_list or min(args.client_list) < 1 or args.tokens < 2 or args.rounds < 1:
        ap.error("--clients: positive integers; --tokens >= 2; --rounds >= 1")
    return args


def main() -> int:
    args = parse()
    tmp = Path(tempfile.mkdtemp(prefix="hearth-bench-batch-"))
    if args.inside:
        results, split = pooled(args, args.gguf, args.home, tmp)
        args.json_out.write_text(json.dumps({"layout": split, "results": {
            k: {n: asdict(c) for n, c in v.items()} for k, v in results.items()}}))
        return 0
    for tool in ("llama-server", "rpc-server"):
        if not (TOOLS / tool).exists():
            raise SystemExit(f"{TOOLS / tool} is missing: run bash ../shared/anchors/build-llama-tools.sh")
    from hearth.models.pull import resolve
    from hearth.models.store import ModelStore

    home = tmp / "home"
    store = ModelStore(home / "models")
    resolve(store, MODEL)
    gguf = store.model_path(MODEL)
    if not args.no_local:
        procs = Procs(tmp)
        try:
            local = measure(procs, Setup(gguf, home, args.threads, args.ctx, no_reuse=args.llama_no_reuse,
                                         reuse=args.hearth_reuse),
                            args.client_list, args.tokens, args.rounds)
        finally:
            procs.stop_all()
        section = "bench_batch" + (":no-reuse" if args.llama_no_reuse else "") + (
            ":tokens" if args.hearth_reuse == "tokens" else "")
        print(write_section(args.out, section, report_local(args, local)), flush=True)
    if args.rpc:
        pool, split = in_namespaces(args, gguf, home, tmp)
        section = "bench_batch:rpc" + (":tokens" if args.hearth_reuse == "tokens" else "")
        print(write_section(args.out, section, report_pooled(args, pool, split)))
    shutil.rmtree(tmp, ignore_errors=True)  # the model copy and the logs; kept when a run fails
    return 0


if __name__ == "__main__":
    sys.exit(main())
