"""The lease manager under random interleavings of grant, heartbeat, release, revoke, expiry,
dead servers and shutdown: no exception escapes, the expiry loop keeps going, no lease outlives
its expiry by more than a round of the loop, no RPC server outlives its lease.

The RPC servers here are recording fakes behind the RpcServer protocol, the clock is a counter
and the thread hand-off yields to the event loop a seeded number of times before calling: a
real server takes about a second to start, so hundreds of random runs with real processes
would take hours, and real threads would make the interleavings irreproducible for
hypothesis. Everything else is the real LeaseManager. test_lease_race.py runs the race that
killed the loop with real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from hearth.ggml.hello import RpcVersion
from hearth.ggml.process import RpcServerFailed
from hearth.rpc_pool.leases import Lease, LeaseManager, LeaseNotFound, LeaseRefused

HOLDERS = ["10.0.0.2", "10.0.0.3", "10.0.0.4"]
TTL = 10.0
ALLOWED = (LeaseRefused, LeaseNotFound, RpcServerFailed)


class FakeServer:
    """Records its life. stop() may come at any time, also before start() (then start fails)."""

    def __init__(self, port: int, fail: bool) -> None:
        self.port = port
        self.endpoint = f"127.0.0.1:{port}"
        self.fail = fail
        self.started = self.stopped = False
        self.grown = 0

    @property
    def alive(self) -> bool:
        return self.started and not self.stopped

    def start(self) -> RpcVersion:
        if self.fail or self.stopped:
            raise RpcServerFailed("fake server refused to start")
        self.started = True
        return RpcVersion(7, 0, 0)

    def stop(self) -> None:
        self.stopped = True

    def used(self) -> int:
        return self.grown if self.alive else 0


class ErrorLog(logging.Handler):
    """What the manager logged as an error: the expiry loop survives those, but none may occur."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class LeaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.now = 0.0
        self.servers: list[FakeServer] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.ids: list[str] = []
        self.expiry: dict[str, float] = {}
        """When each granted lease is over at the latest, by our own account of heartbeats."""
        self.released: set[str] = set()
        self.fail_next = False
        self.shut = False
        self.rng = random.Random(0)
        self.stack = contextlib.AsyncExitStack()
        self.manager: LeaseManager
        self.errors = ErrorLog()
        logging.getLogger("hearth.node").addHandler(self.errors)

    def _factory(self, cache: Path | None, log: Path, max_bytes: int) -> FakeServer:
        server = FakeServer(40000 + len(self.servers), self.fail_next)
        self.servers.append(server)
        return server

    async def _offload(self, fn: Callable[..., Any], *args: Any) -> Any:
        for _ in range(self.rng.randint(0, 3)):
            await asyncio.sleep(0)
        return fn(*args)

    @initialize(seed=st.integers(0, 2**32), max_leases=st.integers(1, 6))
    def start(self, seed: int, max_leases: int) -> None:
        self.rng = random.Random(seed)
        self.manager = LeaseManager("127.0.0.1", 160 * 2**20, Path("/nonexistent"), Path("/nonexistent"), 1,
                                    ttl=TTL, max_leases=max_leases, cache_limit=0, server_factory=self._factory,
                                    clock=lambda: self.now, offload=self._offload, tick=0.0)
        self.loop.run_until_complete(self.stack.enter_async_context(self.manager.running()))

    def _spawn(self, coro: Any, on_done: Callable[[Any], None] | None = None) -> None:
        task = self.loop.create_task(coro)
        if on_done is not None:
            task.add_done_callback(lambda t: t.cancelled() or t.exception() or on_done(t.result()))
        self.tasks.append(task)
        self._yield(self.rng.randint(0, 4))

    def _yield(self, n: int) -> None:
        async def pause() -> None:
            for _ in range(n):
                await asyncio.sleep(0)

        self.loop.run_until_complete(pause())

    def _granted(self, lease: Lease) -> None:
        self.ids.append(lease.lease_id)
        self.expiry[lease.lease_id] = lease.expires

    @rule(holder=st.sampled_from(HOLDERS), want=st.sampled_from([0, 1]) | st.integers(0, 40 * 2**20),
          fail=st.integers(0, 5).map(lambda n: n == 0))
    def grant(self, holder: str, want: int, fail: bool) -> None:
        self.fail_next = fail
        self._spawn(self.manager.grant(holder, holder, want), self._granted)

    def _pick(self, which: int, live: bool) -> str | None:
        """A lease the manager holds now, or any lease ever granted (perhaps long over)."""
        ids = list(self.manager.leases) if live and self.manager.leases else self.ids
        return ids[which % len(ids)] if ids else None

    @rule(which=st.integers(0, 50), live=st.booleans(), as_holder=st.booleans())
    def heartbeat(self, which: int, live: bool, as_holder: bool) -> None:
        lid = self._pick(which, live)
        if lid is None:
            return
        lease = self.manager.leases.get(lid)
        holder = (lease.holder if lease else HOLDERS[0]) if as_holder else "stranger"
        try:
            self.manager.heartbeat(lid, holder)
        except LeaseNotFound:
            return
        # A heartbeat may renew only a live lease of its own holder, never one already over.
        assert as_holder and lid not in self.released and self.now <= self.expiry.get(lid, self.now)
        self.expiry[lid] = self.now + TTL

    @rule(which=st.integers(0, 50), live=st.booleans())
    def release(self, which: int, live: bool) -> None:
        lid = self._pick(which, live)
        if lid is None:
            return
        lease = self.manager.leases.get(lid)
        holder = lease.holder if lease else HOLDERS[0]
        self._spawn(self.manager.release(lid, holder), lambda _: self.released.add(lid))

    @rule(which=st.integers(0, 50), revoke=st.booleans())
    def ends_as_others_expire(self, which: int, revoke: bool) -> None:
        """The race of issue 8: every lease falls due, and before the loop has ended them all,
        a holder releases one (or is unpaired)."""
        self.now += TTL + 1
        lid = self._pick(which, True)
        if lid is not None:
            lease = self.manager.leases.get(lid)
            if revoke and lease is not None:
                self._spawn(self.manager.revoke(lease.holder))
            else:
                self._spawn(self.manager.release(lid, lease.holder if lease else HOLDERS[0]),
                            lambda _: self.released.add(lid))

    @rule(holder=st.sampled_from(HOLDERS))
    def revoke(self, holder: str) -> None:
        self._spawn(self.manager.revoke(holder))

    @rule()
    def expire_now(self) -> None:
        """Expiry from outside the loop too (a grant does this), racing the loop's own."""
        self._spawn(self.manager.expire())

    @rule(which=st.integers(0, 50))
    def server_dies(self, which: int) -> None:
        if self.servers:
            self.servers[which % len(self.servers)].stopped = True  # crashed: its lease is over

    @rule(which=st.integers(0, 50), mib=st.integers(0, 200))
    def server_grows(self, which: int, mib: int) -> None:
        """A lessee fills its server (up to what its cap would allow): the node counts it."""
        if self.servers:
            self.servers[which % len(self.servers)].grown = mib * 2**20

    @rule(dt=st.sampled_from([0.5, 3.0, TTL / 2, TTL + 1]))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule(n=st.integers(1, 20))
    def loop_runs(self, n: int) -> None:
        self._yield(n)

    @precondition(lambda self: not self.shut)
    @rule()
    def shutdown(self) -> None:
        self.shut = True
        self._spawn(self.stack.aclose())

    @rule()
    def settle(self) -> None:
        """Every operation finishes (nothing hangs), then leases and servers agree."""
        ticks = self.manager.ticks
        for _ in range(500):
            if all(t.done() for t in self.tasks) and not any(not t.done() for t in self.manager._ending):
                break
            self._yield(1)
        else:
            raise AssertionError("an operation hangs")
        self._yield(30)  # a few rounds of the loop
        if not self.shut:
            assert self.manager.ticks > ticks, "the expiry loop stopped"
            overdue = [lid for lid, lease in self.manager.leases.items()
                       if self.expiry.get(lid, self.now) < self.now or not lease.server.alive]
            assert not overdue, f"leases outlived their expiry: {overdue}"
        in_leases = {id(lease.server) for lease in self.manager.leases.values()}
        strays = [s.endpoint for s in self.servers if s.alive and id(s) not in in_leases]
        assert not strays, f"RPC servers outlived their leases: {strays}"
        if self.shut:
            assert not self.manager.leases and not any(s.alive for s in self.servers)

    @invariant()
    def no_exception_escapes(self) -> None:
        for task in self.tasks:
            if task.done():
                assert not task.cancelled()
                exc = task.exception()
                assert exc is None or isinstance(exc, ALLOWED), repr(exc)

    @invariant()
    def nothing_failed_quietly(self) -> None:
        assert not self.errors.records, self.errors.records[0].getMessage() + repr(self.errors.records[0].exc_info)

    @invariant()
    def slots_and_memory_hold(self) -> None:
        if not hasattr(self, "manager"):
            return
        m = self.manager
        leases = list(m.leases.values())
        assert len(leases) <= m.max_leases and sum(lease.bytes for lease in leases) <= m.budget
        for holder in HOLDERS:
            assert sum(lease.holder == holder for lease in leases) <= m.policy.per_holder
        assert all(lease.bytes >= m.policy.min_bytes for lease in leases)

    def teardown(self) -> None:
        try:
            if not self.shut:
                self.shut = True
                self.loop.run_until_complete(self.stack.aclose())

            async def finish() -> None:
                await asyncio.gather(*self.tasks, return_exceptions=True)

            self.loop.run_until_complete(finish())
            assert not any(s.alive for s in self.servers), "a server outlived shutdown"
        finally:
            logging.getLogger("hearth.node").removeHandler(self.errors)
            self.loop.close()


LeaseMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
test_lease_manager_survives_any_interleaving = LeaseMachine.TestCase
