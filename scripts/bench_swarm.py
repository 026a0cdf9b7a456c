#!/usr/bin/env python3
"""What does the public swarm's coordinator cost? (issue 10)

1. Streaming through the coordinator vs straight from the worker's machine: time to first token and
   decode tokens/s, a real `hearth coordinator` and one real `hearth contribute` worker with the
   embedded model against `hearth serve` on the worker's HEARTH_HOME (same model, threads, n_ctx),
   both read by the official `openai` client; ABAB rounds, one side at a time.
2. Jobs per second the coordinator dispatches on SQLite and on PostgreSQL: scripted fast workers
   (one-token jobs, real signed receipts), K jobs submitted at once through `POST /v1/jobs`, timed
   from the first submit until every job is done and settled; rounds alternate the databases.

    .venv/bin/python scripts/bench_swarm.py [--rounds 8] [--tokens 96] [--threads 2 1] [--jobs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from bench_overhead import MODEL, Run, cpu_seconds, hearth_stream, measure  # noqa: E402
from benchdoc import write_section  # noqa: E402
from swarmkit import contribute, hearth_serve, identity, scripted_worker, throwaway_postgres  # noqa: E402

from hearth.identity import NodeIdentity  # noqa: E402
from hearth.pairing.signed import SignedAuth  # noqa: E402
from hearth.public_swarm.coordinator.job_rules import JobState  # noqa: E402
from hearth.public_swarm.coordinator.jobs import JobQueue  # noqa: E402
from hearth.public_swarm.ledger.db import Ledger  # noqa: E402
from tests.public_swarm.coordinator_proc import Coordinator, coordinator  # noqa: E402
from tests.public_swarm.dispatch_kit import MODEL as SCRIPTED  # noqa: E402
from tests.public_swarm.limits_kit import UNLIMITED  # noqa: E402

PROMPT = "Write a long essay about the history of Rome."
SIDES = ("coordinator", "direct")
CONNECTIONS = 16
"""Submitting connections: under the 32 a coordinator lets one client address hold (the workers' links count)."""


@dataclass
class StreamResult:
    threads: int
    runs: dict[str, list[Run]] = field(default_factory=lambda: {s: [] for s in SIDES})
    cpu: dict[str, float] = field(default_factory=lambda: {"coordinator": 0.0, "worker": 0.0, "serve": 0.0})
    same_text: bool = True

    def med(self, side: str, what: str) -> float:
        return statistics.median(float(getattr(r, what)) for r in self.runs[side])

    def paired(self, what: str) -> float:
        """Median over rounds of coordinator minus direct: ms/token, or TTFT ms."""
        pairs = zip(self.runs["coordinator"], self.runs["direct"], strict=True)
        if what == "ms_per_token":
            return statistics.median(1000 / c.decode_tps - 1000 / d.decode_tps for c, d in pairs)
        return statistics.median(c.ttft_ms - d.ttft_ms for c, d in pairs)

    def cpu_per_token(self, who: str) -> float:
        side = "direct" if who == "serve" else "coordinator"
        return self.cpu[who] / sum(r.tokens for r in self.runs[side]) * 1000


def collecting(stream: Iterator[str | None], into: list[str]) -> Iterator[str | None]:
    for text in stream:
        into.append(text or "")
        yield text


def wait_listed(client: object, timeout: float = 240) -> None:
    """Until the coordinator lists the worker's model (loaded and speed measured)."""
    deadline = time.monotonic() + timeout
    while not [m for m in client.models.list().data if m.id == MODEL]:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not link with its model")
        time.sleep(0.5)


def stream_bench(threads: int, args: argparse.Namespace, work: Path, models: Path) -> StreamResult:
    import openai

    out = StreamResult(threads)
    me = NodeIdentity.load_or_create(work / "asker")
    worker_home = work / f"worker-t{threads}"
    with ExitStack() as stack:
        coord = stack.enter_context(coordinator(work / f"coord-t{threads}"))
        worker = stack.enter_context(contribute(worker_home, coord.url, MODEL, models, threads))
        http = stack.enter_context(httpx.Client(auth=SignedAuth(me), timeout=300))
        # openai's stubs name its own httpx fork's Client; an httpx.Client with an Auth works the same.
        swarm = openai.OpenAI(base_url=coord.url + "/v1", api_key="unused", http_client=http,  # type: ignore[arg-type, unused-ignore]
                              max_retries=0)
        wait_listed(swarm)
        # Started only now, so it does not run while the worker measures its decode speed.
        direct_url, serve_pid = stack.enter_context(hearth_serve(worker_home, models, MODEL, threads))
        direct = openai.OpenAI(base_url=direct_url + "/v1", api_key="local", max_retries=0)
        clients = {"coordinator": swarm, "direct": direct}
        pids = {"coordinator": coord.proc.pid, "worker": worker.pid, "serve": serve_pid}
        messages = [{"role": "user", "content": PROMPT}]
        for side in SIDES:  # warm both: the prompt's chunks cached in both engines alike
            measure(hearth_stream(clients[side], messages, 8), time.perf_counter())
        for i in range(args.rounds):
            texts: dict[str, str] = {}
            for side in SIDES if i % 2 == 0 else SIDES[::-1]:
                time.sleep(args.gap)  # the other side's trailing work (settling, receipts) is over
                before = {who: cpu_seconds(pid) for who, pid in pids.items()}
                parts: list[str] = []
                t0 = time.perf_counter()
                out.runs[side].append(measure(collecting(hearth_stream(clients[side], messages, args.tokens), parts),
                                              t0))
                after = {who: cpu_seconds(pid) for who, pid in pids.items()}
                for who in (["serve"] if side == "direct" else ["coordinator", "worker"]):
                    out.cpu[who] += after[who] - before[who]
                texts[side] = "".join(parts)
            out.same_text &= texts["coordinator"] == texts["direct"]
            print(f"t{threads} round {i + 1}: " + ", ".join(
                f"{s} {out.runs[s][-1].decode_tps:.1f} tok/s ttft {out.runs[s][-1].ttft_ms:.0f} ms" for s in SIDES),
                flush=True)
    return out


@dataclass
class DispatchRound:
    db: str
    jobs: int
    submit_s: float
    settled_s: float

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.settled_s


async def one_round(coord: Coordinator, me: NodeIdentity, k: int) -> DispatchRound:
    """K one-token jobs at once; seconds until all are submitted, and until all are done and settled."""
    body = {"model": SCRIPTED.name, "prompt": "Say hello.", "max_tokens": 1, "temperature": 0}
    with JobQueue.open(coord.db) as queue, Ledger.open(coord.db, pool_size=1) as ledger:
        before = queue.counts().get(JobState.DONE, 0)
        async with httpx.AsyncClient(auth=SignedAuth(me), base_url=coord.url, timeout=300,
                                     limits=httpx.Limits(max_connections=CONNECTIONS)) as http:
            t0 = time.perf_counter()
            answers = await asyncio.gather(*(http.post("/v1/jobs", json=body) for _ in range(k)))
            submitted = time.perf_counter() - t0
        refused = [a.text for a in answers if a.status_code != 202]
        if refused:
            raise RuntimeError(f"{len(refused)} submits refused: {refused[0]}")
        while True:
            counts = await asyncio.to_thread(queue.counts)
            if counts.get(JobState.DONE, 0) - before >= k and not await asyncio.to_thread(ledger.holds_of, me.node_id):
                break
            if counts.get(JobState.FAILED, 0):
                raise RuntimeError(f"jobs failed: {counts}")
            await asyncio.sleep(0.02)
        return DispatchRound("", k, submitted, time.perf_counter() - t0)


async def dispatch_bench(coords: dict[str, Coordinator], args: argparse.Namespace) -> list[DispatchRound]:
    me = identity(77)
    workers = [scripted_worker(100 + 10 * n + i, args.slots)
               for n in range(len(coords)) for i in range(args.workers)]
    try:
        for n, coord in enumerate(coords.values()):
            for w in workers[n * args.workers:(n + 1) * args.workers]:
                await w.start(coord.url)
            async with httpx.AsyncClient(auth=SignedAuth(me), base_url=coord.url) as http:
                while not [m for m in (await http.get("/v1/models")).json()["data"]
                           if m["id"] == SCRIPTED.name and m["workers"] == args.workers]:
                    await asyncio.sleep(0.2)
            await one_round(coord, me, min(args.jobs, 20))  # warm: connections, welcome, first plans
        rounds: list[DispatchRound] = []
        names = list(coords)
        for i in range(args.dispatch_rounds):
            for name in names if i % 2 == 0 else names[::-1]:
                r = await one_round(coords[name], me, args.jobs)
                r.db = name
                rounds.append(r)
                print(f"{name} round {i + 1}: {r.jobs_per_s:.1f} jobs/s (submitted in {r.submit_s:.2f} s)", flush=True)
        return rounds
    finally:
        for w in workers:
            await w.stop()


def run_dispatch(args: argparse.Namespace, work: Path) -> list[DispatchRound]:
    with ExitStack() as stack:
        cluster = stack.enter_context(throwaway_postgres())
        coords = {"SQLite": stack.enter_context(coordinator(work / "dispatch-sqlite", None, *UNLIMITED)),
                  "PostgreSQL 15": stack.enter_context(coordinator(work / "dispatch-pg", cluster.new_database(),
                                                                   *UNLIMITED))}
        return asyncio.run(dispatch_bench(coords, args))


def command(args: argparse.Namespace) -> str:
    threads = " ".join(map(str, args.threads))
    return (f"`.venv/bin/python scripts/bench_swarm.py --rounds {args.rounds} --tokens {args.tokens} "
            f"--threads {threads} --jobs {args.jobs} --workers {args.workers} --slots {args.slots} "
            f"--dispatch-rounds {args.dispatch_rounds}`")


def render_stream(results: list[StreamResult], args: argparse.Namespace) -> str:
    rows, lines = [], []
    for r in results:
        ratio = r.med("coordinator", "decode_tps") / r.med("direct", "decode_tps")
        rows.append(
            f"| {r.threads} | {r.med('direct', 'decode_tps'):.1f} | {r.med('coordinator', 'decode_tps'):.1f} "
            f"| **{ratio:.3f}** | **{r.paired('ms_per_token'):+.2f}** | {r.med('direct', 'ttft_ms'):.0f} "
            f"| {r.med('coordinator', 'ttft_ms'):.0f} | **{r.paired('ttft_ms'):+.0f}** "
            f"| {r.cpu_per_token('coordinator'):.2f} | {r.cpu_per_token('worker'):.2f} | {r.cpu_per_token('serve'):.2f} "
            f"| {'yes' if r.same_text else 'NO'} |")
        lines.append(f"- {r.threads} thread(s), tokens/s direct/coordinator, TTFT ms direct/coordinator: " + ", ".join(
            f"{d.decode_tps:.1f}/{c.decode_tps:.1f} {d.ttft_ms:.0f}/{c.ttft_ms:.0f}"
            for d, c in zip(r.runs["direct"], r.runs["coordinator"], strict=True)))
    return f"""### Streaming through the coordinator vs straight from the worker's machine

SmolLM2-135M-Instruct Q4_1 (embedded), n_ctx 2048, greedy, the same chat prompt and {args.tokens} tokens every
run, {args.rounds} rounds per thread count, each round one run per side, the side that goes first alternating, one
side at a time ({args.gap} s pause between runs). Through the coordinator: the `openai` client (its HTTP client
signing each request) streams `/v1/chat/completions` from a `hearth coordinator` process (SQLite), which runs
the job on one `hearth contribute --radius machine` process over its WebSocket link; that worker's engine is its
own child process. Straight: the same client streams from `hearth serve --radius machine` started on the
worker's HEARTH_HOME, with the same model file and settings, its engine its own child process. Both paths thus
end in the same kind of engine, so the difference is the coordinator hop (HTTP in, the link, the job queue and
books) rather than hearth's HTTP layer, which `bench_overhead.py` measures on its own. Tokens/s counts streamed
chunks from the first to the last; TTFT runs from sending the request. Added per token and added TTFT are medians
of per-round differences (coordinator minus direct). CPU is each process's own CPU time (not the engines') per
streamed token.

| threads | direct tok/s | coordinator tok/s | ratio | added ms/token | direct TTFT ms | coordinator TTFT ms | added TTFT ms | coordinator CPU ms/token | worker CPU ms/token | serve CPU ms/token | same text |
|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

{chr(10).join(lines)}"""


def render_dispatch(rounds: list[DispatchRound], args: argparse.Namespace) -> str:
    rows = []
    for db in dict.fromkeys(r.db for r in rounds):
        mine = [r for r in rounds if r.db == db]
        rows.append(f"| {db} | **{statistics.median(r.jobs_per_s for r in mine):.1f}** "
                    f"| {min(r.jobs_per_s for r in mine):.1f}-{max(r.jobs_per_s for r in mine):.1f} "
                    f"| {statistics.median(r.jobs / r.submit_s for r in mine):.0f} |")
    per = "\n".join(f"- {db}, jobs/s per round: " + ", ".join(f"{r.jobs_per_s:.1f}" for r in rounds if r.db == db)
                    for db in dict.fromkeys(r.db for r in rounds))
    return f"""### Jobs per second the coordinator dispatches

A `hearth coordinator` process per database (SQLite file; PostgreSQL 15 on 127.0.0.1, fsync off), each with
{args.workers} scripted workers of {args.slots} job slot(s) (tests/public_swarm/dispatch_live.py: the real link,
WorkerSession and signed receipts; each job streams one token at once). A round submits {args.jobs} one-token
jobs at once through `POST /v1/jobs` (signed, {CONNECTIONS} connections: the coordinator allows one address 32, and the workers dial from the same one) and ends when every one is done and its hold
settled (polled in the database every 20 ms); jobs/s = jobs / that time. {args.dispatch_rounds} rounds per
database, alternating which goes first; the workers and the requester run in the benchmark's own process.

| database | jobs/s (median) | range | submits/s accepted (median) |
|---|---|---|---|
{chr(10).join(rows)}

{per}"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--gap", type=float, default=0.3, help="seconds between runs")
    ap.add_argument("--jobs", type=int, default=200, help="jobs per dispatch round")
    ap.add_argument("--workers", type=int, default=4, help="scripted workers per coordinator")
    ap.add_argument("--slots", type=int, default=4, help="jobs each scripted worker runs at once")
    ap.add_argument("--dispatch-rounds", type=int, default=4)
    ap.add_argument("--skip", choices=["stream", "dispatch"], help="leave one part out (the doc is written only "
                                                                   "when both ran)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = ap.parse_args()

    from hearth.models.pull import resolve
    from hearth.models.store import ModelStore

    work = Path(tempfile.mkdtemp(prefix="hearth-bench-swarm-"))
    loadavg, when = os.getloadavg()[0], time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    models = work / "home" / "models"
    resolve(ModelStore(models), MODEL)
    streams = [] if args.skip == "stream" else [stream_bench(t, args, work, models) for t in args.threads]
    rounds = [] if args.skip == "dispatch" else run_dispatch(args, work)
    body = f"""## Public swarm: the coordinator's cost, and its dispatch rate (`scripts/bench_swarm.py`)

Measured {when} on {platform.machine()}, {os.cpu_count()} cores shared by everything below (1-minute load
average before the run {loadavg:.2f}, after it {os.getloadavg()[0]:.2f}), Python {platform.python_version()}: {command(args)}

{render_stream(streams, args) if streams else ''}

{render_dispatch(rounds, args) if rounds else ''}"""
    if args.skip:
        print(body)
    else:
        print(write_section(args.out, "bench_swarm", body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
