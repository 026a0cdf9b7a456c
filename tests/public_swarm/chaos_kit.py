"""The public swarm under chaos (issue 11), shared by scripts/chaos_swarm.py and its short test.

A real `hearth coordinator` process and real `hearth contribute` workers with the embedded model;
signed requesters with credits the operator granted send jobs (streamed OpenAI chat requests and
`/v1/jobs` submissions, polled) while workers are killed with SIGKILL (each with its engine: its
process group, as a machine losing power) and restarted at random. Afterwards the books are read
from the coordinator's database: every job final (done, or failed with an error), each hold closed
once (one closing operation in the ledger per hold), `Ledger.audit()` empty, and the credits of
every account and open hold summing to the grants.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from nacl.signing import SigningKey
from sqlalchemy import select

from hearth.identity import NodeIdentity
from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.client import CoordinatorClient
from hearth.public_swarm.coordinator.job_tables import checks as checks_table
from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.coordinator.job_tables import links as links_table
from hearth.public_swarm.ledger.models import entries
from hearth.public_swarm.ledger.models import holds as holds_table
from hearth.public_swarm.ledger.rules import OPERATOR
from tests.conftest import HEARTH, REPO, hearth_env
from tests.public_swarm.coordinator_proc import Coordinator, coordinator

MODEL = "smollm2-135m"
FINAL = {"done", "failed", "cancelled"}
GRANT = 1_000 * 1_000_000
"""Micro-credits the operator grants each requester."""


def identity(seed: int) -> NodeIdentity:
    return NodeIdentity(SigningKey(bytes([seed]) * 32))


@dataclass
class Outcome:
    """What was tried and what held."""

    jobs: int = 0
    streamed: int = 0
    polled: int = 0
    kills: int = 0
    restarts: int = 0
    retried_submits: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    stuck: list[str] = field(default_factory=list)
    moved: int = 0
    """Jobs that streamed from more than one worker (a kill took their first mid-stream)."""
    lost_runs: int = 0
    """Runs lost (a worker killed or silent while it held the job), summed over jobs."""
    jobs_with_lost_run: int = 0
    holds: int = 0
    closed_twice: list[str] = field(default_factory=list)
    still_open: list[str] = field(default_factory=list)
    audit: list[str] = field(default_factory=list)
    grants: int = 0
    balances_and_holds: int = 0
    declared_max_jobs: int = 0
    published_max_jobs: set[int] = field(default_factory=set)
    seconds: float = 0.0
    client_errors: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    """Spot-checks by outcome (a run with spot-checks on): every worker is honest, so none may fail."""
    canaries: Counter[str] = field(default_factory=Counter)

    @property
    def held(self) -> bool:
        return (not self.stuck and not self.closed_twice and not self.still_open and not self.audit
                and self.grants == self.balances_and_holds and self.states.total() == self.jobs
                and not self.checks["failed"])


class Workers:
    """`hearth contribute` processes, each in its own session so SIGKILL takes its engine too."""

    def __init__(self, work: Path, url: str, models: Path, n: int, max_jobs: int) -> None:
        self.work, self.url, self.models, self.max_jobs = work, url, models, max_jobs
        self.procs: dict[int, subprocess.Popen[bytes] | None] = dict.fromkeys(range(n))

    def start(self, i: int) -> None:
        home = self.work / f"worker{i}"
        home.mkdir(parents=True, exist_ok=True)
        env = hearth_env(home, HEARTH_MODELS_DIR=str(self.models))
        env["HEARTH_N_THREADS"] = "1"
        with (home / "contribute.log").open("ab") as log:
            self.procs[i] = subprocess.Popen(
                [*HEARTH, "contribute", "--coordinator", self.url, "--model", MODEL, "--radius", "machine",
                 "--max-jobs", str(self.max_jobs)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                start_new_session=True)

    def kill9(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            self.procs[i] = None

    def alive(self) -> list[int]:
        return [i for i, p in self.procs.items() if p is not None and p.poll() is None]

    def dead(self) -> list[int]:
        return [i for i in self.procs if i not in self.alive()]

    def stop_all(self) -> None:
        for i, proc in self.procs.items():
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    self.kill9(i)


async def linked_workers(http: httpx.AsyncClient) -> int:
    answer = await http.get("/v1/models")
    if answer.status_code != 200:
        return 0
    return max([int(m.get("workers", 0)) for m in answer.json().get("data", []) if m.get("id") == MODEL] or [0])


async def _wait_after(answer: httpx.Response, out: Outcome, what: str) -> None:
    out.retried_submits[f"{what} {answer.status_code} {_code(answer)}"] += 1
    await asyncio.sleep(min(10.0, float(answer.headers.get("retry-after", "1"))))


def _code(answer: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        return str(answer.json()["error"]["code"])
    return "?"


RETRY = {429, 503, 404}
"""Submits retried: over a limit, or (while every worker is down) no worker serves the model yet."""


async def stream_one(http: httpx.AsyncClient, i: int, max_tokens: int, out: Outcome) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Count to ten, {i}."}],
            "max_tokens": max_tokens, "stream": True}
    while True:
        async with http.stream("POST", "/v1/chat/completions", json=body) as answer:
            if answer.status_code in RETRY:
                await answer.aread()
                await _wait_after(answer, out, "stream")
                continue
            if answer.status_code != 200:
                out.client_errors[f"stream {answer.status_code}"] += 1
                return
            async for line in answer.aiter_lines():
                if line.strip() == "data: [DONE]":
                    break
            out.streamed += 1
            return


async def poll_one(http: httpx.AsyncClient, i: int, max_tokens: int, out: Outcome) -> None:
    body = {"model": MODEL, "prompt": f"Once upon a time {i}", "max_tokens": max_tokens, "key": f"chaos-job-{i:05d}"}
    while (answer := await http.post("/v1/jobs", json=body)).status_code in RETRY:
        await _wait_after(answer, out, "submit")
    if answer.status_code != 202:
        out.client_errors[f"submit {answer.status_code} {_code(answer)}"] += 1
        return
    job_id = answer.json()["id"]
    while True:
        await asyncio.sleep(0.5)
        status = await http.get(f"/v1/jobs/{job_id}")
        if status.status_code == 429:
            await _wait_after(status, out, "poll")
            continue
        if status.status_code == 200 and status.json()["state"] in FINAL:
            out.polled += 1
            return


async def chaos(rng: random.Random, workers: Workers, every: tuple[float, float], down: tuple[float, float],
                out: Outcome, stop: asyncio.Event, max_kills: int | None = None) -> None:
    """Kill a random live worker every `every` seconds (at most `max_kills`); restart it after `down` seconds."""
    restarts: set[asyncio.Task[None]] = set()

    async def restart(i: int, after: float) -> None:
        await asyncio.sleep(after)
        workers.start(i)
        out.restarts += 1

    while not stop.is_set() and (max_kills is None or out.kills < max_kills):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), rng.uniform(*every))
        if stop.is_set():
            break
        alive = workers.alive()
        if not alive:
            continue
        victim = rng.choice(alive)
        workers.kill9(victim)
        out.kills += 1
        task = asyncio.create_task(restart(victim, rng.uniform(*down)))
        restarts.add(task)
        task.add_done_callback(restarts.discard)
    await stop.wait()  # past max_kills: the restarts still come
    for task in list(restarts):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def drive(coord: Coordinator, workers: Workers, n_jobs: int, *, requesters: int, concurrency: int,
                max_tokens: int, every: tuple[float, float], down: tuple[float, float], seed: int,
                out: Outcome, link_timeout: float, max_kills: int | None) -> None:
    rng = random.Random(seed)
    for i in workers.procs:
        workers.start(i)
    async with httpx.AsyncClient(base_url=coord.url, auth=SignedAuth(identity(60)), timeout=30) as probe:
        deadline = time.monotonic() + link_timeout
        while await linked_workers(probe) < len(workers.procs):
            if time.monotonic() > deadline:
                raise AssertionError(f"workers did not link within {link_timeout} s")
            await asyncio.sleep(1)
    with coord.ledger() as ledger, ledger.engine.connect() as conn:
        out.published_max_jobs = {int(r.max_jobs) for r in conn.execute(select(links_table.c.max_jobs))}
    people = [identity(70 + r) for r in range(requesters)]
    async with CoordinatorClient(coord.url, coord.operator) as operator:
        for who in people:
            await operator.grant(who.node_id, GRANT, f"chaos-grant-{who.node_id}")
    clients = [httpx.AsyncClient(base_url=coord.url, auth=SignedAuth(p), timeout=600,
                                 transport=httpx.AsyncHTTPTransport(local_address=f"127.0.0.{20 + r}"))
               for r, p in enumerate(people)]
    gate = asyncio.Semaphore(concurrency)
    stop = asyncio.Event()

    async def one(i: int) -> None:
        async with gate:
            run = stream_one if i % 2 else poll_one
            try:
                await asyncio.wait_for(run(clients[i % requesters], i, max_tokens, out), 900)
            except (httpx.HTTPError, TimeoutError) as exc:
                out.client_errors[type(exc).__name__] += 1

    chaos_task = asyncio.create_task(chaos(rng, workers, every, down, out, stop, max_kills))
    try:
        await asyncio.gather(*(one(i) for i in range(n_jobs)))
    finally:
        stop.set()
        await chaos_task
        for c in clients:
            await c.aclose()


def read_books(coord: Coordinator, out: Outcome, settle_s: float = 30) -> None:
    """The checks, from the coordinator's database (after the sweep had time to close open books)."""
    with coord.ledger() as ledger:
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            with ledger.engine.connect() as conn:
                busy = conn.execute(select(jobs.c.id).where(jobs.c.state.not_in(FINAL),
                                                            jobs.c.purpose == "user")).first()
                open_hold = conn.execute(select(holds_table.c.id).where(holds_table.c.state == "open")).first()
            if busy is None and open_hold is None:
                break
            time.sleep(1)
        with ledger.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.id, jobs.c.state, jobs.c.error, jobs.c.parts, jobs.c.attempts)
                                .where(jobs.c.purpose == "user")).all()
            out.checks = Counter(o for (o,) in conn.execute(select(checks_table.c.outcome)))
            out.canaries = Counter(s for (s,) in conn.execute(select(jobs.c.state).where(jobs.c.purpose == "canary")))
            closing: defaultdict[str, set[str]] = defaultdict(set)
            for hold_id, op_key in conn.execute(select(entries.c.hold_id, entries.c.op_key).where(
                    entries.c.hold_id.is_not(None), entries.c.kind != "hold")):
                closing[hold_id].add(op_key)
            all_holds = conn.execute(select(holds_table.c.id, holds_table.c.state)).all()
            out.grants = int(sum(a for (a,) in conn.execute(select(entries.c.amount).where(
                entries.c.kind.in_(["grant", "welcome"])))))
        out.jobs = len(rows)
        for row in rows:
            out.states[row.state] += 1
            if row.state not in FINAL:
                out.stuck.append(row.id)
            if row.state == "failed":
                out.errors[(row.error or "(no error text)")[:80]] += 1
            if len({w for w, n in json.loads(row.parts or "[]") if n > 0}) > 1:
                out.moved += 1
            out.lost_runs += int(row.attempts)
            out.jobs_with_lost_run += int(row.attempts) > 0
        out.holds = len(all_holds)
        out.closed_twice = [h for h, keys in closing.items() if len(keys) > 1]
        out.still_open = [h.id for h in all_holds if h.state == "open"]
        out.audit = ledger.audit()
        out.balances_and_holds = sum(v for k, v in ledger.balances().items() if k != OPERATOR)


def run_chaos(work: Path, models: Path, n_jobs: int, *, workers: int = 3, requesters: int = 4, concurrency: int = 8,
              max_tokens: int = 8, every: tuple[float, float] = (4.0, 12.0), down: tuple[float, float] = (1.0, 6.0),
              seed: int = 11, declared_max_jobs: int = 3, jobs_per_worker: int = 2,
              link_timeout: float = 300, max_kills: int | None = None, checks: bool = False) -> Outcome:
    """The whole run; what held is in the Outcome (`held`). `checks`: spot-checks on (the
    coordinator's default; the books' tests run without)."""
    out = Outcome(declared_max_jobs=declared_max_jobs)
    t0 = time.monotonic()
    env = {"HEARTH_LINK_HEARTBEAT_S": "0.5", "HEARTH_SPOT_CHECKS": "on" if checks else "off"}
    with coordinator(work / "coord", None, "--jobs-per-worker", str(jobs_per_worker), env=env) as coord:
        pool = Workers(work, coord.url, models, workers, declared_max_jobs)
        try:
            asyncio.run(drive(coord, pool, n_jobs, requesters=requesters, concurrency=concurrency,
                              max_tokens=max_tokens, every=every, down=down, seed=seed, out=out,
                              link_timeout=link_timeout, max_kills=max_kills))
        finally:
            pool.stop_all()
        out.seconds = time.monotonic() - t0
        read_books(coord, out)
    return out
