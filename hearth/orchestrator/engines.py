"""Runs requests on engines: one engine child at a time, serving up to its `parallel` requests at
once; the others wait for a slot, fairly between clients (slots.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hearth.engine.events import Done, ReplyEvent, Start, Token
from hearth.engine.supervisor import EngineConfig, EngineProcess
from hearth.errors import EngineCrashed, HearthError
from hearth.ggml.hello import RpcVersion
from hearth.ggml.process import local_rpc_version
from hearth.identity import NodeIdentity
from hearth.models.facts import cached_facts
from hearth.models.pull import resolve
from hearth.models.store import ModelStore
from hearth.node_api.client import NodeClient
from hearth.node_api.feed import Feed
from hearth.orchestrator.failover import Loss, failover_event, next_loss
from hearth.orchestrator.peers import Peer, checked_or_problem
from hearth.orchestrator.placement import Placement
from hearth.orchestrator.planner import DoesNotFit, Plan, plan_slots
from hearth.orchestrator.planner import plan as make_plan
from hearth.orchestrator.policy import PoolPolicy
from hearth.orchestrator.slots import SlotQueue
from hearth.orchestrator.slots_rules import Client, slots_for
from hearth.orchestrator.stats import RequestStats, Tracker
from hearth.orchestrator.survey import local_capacity, peer_capacity, survey_circle
from hearth.pairing.trust import TrustedPeer, TrustStore
from hearth.radius import Radius
from hearth.settings import Settings

MAX_RECOVERIES = 3
STORE_POLL_S = 0.5
log = logging.getLogger("hearth.pool")


class EnginePool:
    """Keeps one engine loaded (the last model used), restarts it when it dies, and when the
    engine was pooled, recovers a stream on a new placement (failover)."""

    def __init__(self, settings: Settings, store: ModelStore | None = None,
                 policy: PoolPolicy | None = None, feed: Feed | None = None) -> None:
        self.settings = settings
        self.feed = feed if feed is not None else Feed()
        """This process's events (the dashboard's stream); the server reads the same one."""
        self.stats = RequestStats(self.feed)
        self.store = store or ModelStore(settings.models_dir)
        self.policy = policy or PoolPolicy()
        self.queue = SlotQueue(settings.max_queue, self._capacity)
        self.engine: EngineProcess | None = None
        self.placement: Placement | None = None
        self.restarts = 0
        self.recoveries = 0
        self.excluded: set[str] = set()
        self._peers: list[Peer] | None = None
        self._gone: dict[str, Peer] = {}
        """Nodes dropped from the survey after they failed (excluded): listed as lost, not forgotten."""
        self._rpc: RpcVersion | None = None
        self._store_watch: asyncio.Task[None] | None = None
        self._names: dict[str, str] = {}
        """Model names as requested -> as stored, so that two names for one model share its slots."""
        self._switch = asyncio.Lock()
        """Held while the engine is started, stopped or recovered: streams never do that twice."""
        self._generation = 0
        """Pooled engines recovered so far; a stream that saw an older one finds the loss handled."""
        self._loss: Loss | None = None

    # -- placement ---------------------------------------------------------------------------
    async def peers(self, refresh: bool = False) -> tuple[list[Peer], list[str]]:
        """Usable household peers (discovered once, re-checked on recovery)."""
        if self._rpc is None:
            self._rpc = await asyncio.to_thread(local_rpc_version)
        identity = NodeIdentity.load_or_create(self.settings.home)
        if self._peers is None or not refresh:
            found, problems = await survey_circle(self.settings, self.policy.radius is Radius.TRUSTED,
                                                  self.policy.discover_wait, list(self.policy.static_peers),
                                                  rpc=self._rpc, tunnel=self._tunnel_up)
        else:
            async def again(p: Peer) -> Peer | str:
                res = await checked_or_problem(nodes, p.address, p.record.port, p.source, rpc, p.record.node_id)
                return res if isinstance(res, str) else replace(res, radius=p.radius, secret=p.secret)

            async with NodeClient(identity, timeout=3.0) as nodes:
                rpc = self._rpc
                checked = await asyncio.gather(*(again(p) for p in self._peers
                                                 if p.record.node_id not in self.excluded))
            found = [c for c in checked if not isinstance(c, str)]
            problems = [c for c in checked if isinstance(c, str)]
        self._note_nodes(self._peers, found)
        self._remember_gone(self._peers, found)
        self._peers = found
        return [p for p in found if p.usable and p.record.node_id not in self.excluded], problems

    @property
    def known_peers(self) -> list[Peer]:
        """The nodes that answered the last survey (none before the first)."""
        return list(self._peers or [])

    @property
    def lost_peers(self) -> list[Peer]:
        """Nodes this pool lost (failed over from) that the survey no longer lists, at most 64."""
        return [p for p in self._gone.values() if p.record.node_id in self.excluded][-64:]

    def _remember_gone(self, before: list[Peer] | None, after: list[Peer]) -> None:
        """A node failed over (excluded) leaves the next survey: keep it, so the status shows it lost."""
        ids = {p.record.node_id for p in after}
        for p in before or []:
            if p.record.node_id in self.excluded and p.record.node_id not in ids:
                self._gone[p.record.node_id] = p

    def _note_nodes(self, before: list[Peer] | None, after: list[Peer]) -> None:
        """node_joined / node_left between two surveys (nothing on the first)."""
        if before is None:
            return
        old = {p.record.node_id: p.record.name for p in before}
        new = {p.record.node_id: p.record.name for p in after}
        for node_id in new.keys() - old.keys():
            self.feed.publish("node_joined", f"{new[node_id]} joined", node=node_id[:16], name=new[node_id])
        for node_id in old.keys() - new.keys():
            self.feed.publish("node_left", f"{old[node_id]} left", node=node_id[:16], name=old[node_id])

    def _tunnel_up(self, identity: NodeIdentity, paired: list[TrustedPeer]) -> bool:
        """Whether paired peers are reached through WireGuard: bring the interface up (or refresh
        its peers) when this machine can; otherwise use an interface set up earlier, if any."""
        from hearth.pairing import circle

        try:
            if circle.choose(self.settings) == "wireguard":
                circle.bring_up(self.settings, identity, paired)
                return True
        except HearthError as exc:
            log.warning("WireGuard: %s", exc.message)
        return self.settings.tunnel != "sealed" and circle.interface(self.settings, identity).exists()

    async def plan_for(self, name: str, parallel: int = 1) -> tuple[Plan | None, dict[str, Peer]]:
        """None when the model should run on this machine alone (with `parallel` KV caches)."""
        if self.policy.radius is Radius.MACHINE:
            return None, {}
        facts = await asyncio.to_thread(cached_facts, self.store, name)
        local = await asyncio.to_thread(local_capacity, self.policy.max_memory)
        n_ctx = self.settings.n_ctx
        if not self.policy.force:
            try:
                make_plan(facts, name, [local], n_ctx=n_ctx, parallel=parallel)
                return None, {}
            except DoesNotFit:
                pass
        usable, _ = await self.peers(refresh=self._peers is not None)
        nodes = [local] + [peer_capacity(p) for p in usable]
        if self.settings.parallel is None:  # the default slots give way to the split: Plan.parallel
            result = plan_slots(facts, name, nodes, n_ctx=n_ctx, most=parallel, force_pool=self.policy.force)
        else:
            result = make_plan(facts, name, nodes, n_ctx=n_ctx, parallel=parallel, force_pool=self.policy.force)
        if self.policy.force and not result.pooled:
            raise DoesNotFit(f"--pool needs another node for {name}, and none is available.",
                             needed=result.needed_bytes, available=0)
        return (result if result.pooled else None), {p.record.node_id: p for p in usable}

    async def parallel_for(self, name: str) -> int:
        """The engine's slots for `name`: HEARTH_PARALLEL, or what this machine holds (slots_for)."""
        if self.settings.parallel is not None:
            return self.settings.parallel
        facts = await asyncio.to_thread(cached_facts, self.store, name)
        local = await asyncio.to_thread(local_capacity, self.policy.max_memory)
        return slots_for(facts, self.settings.n_ctx, local.free_bytes, None)

    def _capacity(self, model: str) -> int:
        """Requests of `model` that may run at once: the loaded engine's slots, 1 until it is loaded."""
        e = self.engine
        return e.parallel if e is not None and e.alive and e.config.model_name == self._names.get(model, model) else 1

    async def _engine_for(self, model: str, on_progress: Callable[[float], None] | None = None) -> EngineProcess:
        name, path = await asyncio.to_thread(resolve, self.store, model)
        self._names[model] = name
        async with self._switch:
            engine = await self._start_engine(name, path, on_progress)
        self.queue.wake()  # its slots may let more requests in
        return engine

    async def _start_engine(self, name: str, path: Path, on_progress: Callable[[float], None] | None) -> EngineProcess:
        current = self.engine
        if current is not None and current.alive and current.config.model_name == name:
            return current
        if current is not None:
            if not current.alive:
                self.restarts += 1
            await self._stop_engine()
        t0 = time.monotonic()
        parallel = await self.parallel_for(name)
        plan, peers = await self.plan_for(name, parallel)
        t_plan = time.monotonic()
        rpc: tuple[str, ...] = ()
        split: tuple[float, ...] = ()
        if plan is not None:
            trust = TrustStore(self.settings.home) if self.policy.radius is Radius.TRUSTED else None
            self.placement = Placement(plan, peers, NodeIdentity.load_or_create(self.settings.home),
                                       on_lost=self._lost, trust=trust)
            await self.placement.acquire()
            rpc, split = self.placement.endpoints, plan.tensor_split()
        t_lease = time.monotonic()
        engine = EngineProcess(EngineConfig(
            model_name=name, model_path=path, n_ctx=self.settings.n_ctx,
            n_threads=self.settings.n_threads, log_path=self.settings.home / "logs" / "engine.log",
            rpc=rpc, split=split, parallel=plan.parallel if plan is not None else parallel,
        ))
        try:
            await engine.start(on_progress)
        except HearthError:
            await self._stop_engine()
            raise
        self.engine = engine
        self._store_watch = asyncio.create_task(self._unload_when_removed(engine))
        over = f" over {len(rpc)} node{'' if len(rpc) == 1 else 's'}" if rpc else ""
        self.feed.publish("model_loaded", f"{name} loaded{over}",
                          model=name, pooled=plan is not None, nodes=len(rpc), slots=engine.parallel,
                          load_ms=round((time.monotonic() - t0) * 1000))
        log.info("engine for %s (%d slots): plan %.0f ms, leases %.0f ms, load %.0f ms%s", name, engine.parallel,
                 (t_plan - t0) * 1000, (t_lease - t_plan) * 1000, (time.monotonic() - t_lease) * 1000,
                 f" over {len(rpc)} RPC servers" if rpc else "")
        return engine

    async def _stop_engine(self) -> None:
        if self._store_watch is not None and self._store_watch is not asyncio.current_task():
            self._store_watch.cancel()
        if self.engine is not None:
            name = self.engine.config.model_name
            await self.engine.stop()
            self.engine = None
            self.feed.publish("model_unloaded", f"{name} unloaded", model=name)
        if self.placement is not None:
            await self.placement.release()
            self.placement = None

    async def _unload_when_removed(self, engine: EngineProcess) -> None:
        """Unload the engine's model within a second of `hearth rm` (or of a pull that replaced it
        under the same name): the engine would otherwise keep serving it, and keep the deleted
        blob's memory and disk space. Requests in flight finish first; later ones get 404."""
        name = engine.config.model_name

        def files() -> object:
            manifest = self.store.get(name)
            return manifest.files if manifest is not None else None

        loaded = await asyncio.to_thread(files)
        while self.engine is engine:
            await asyncio.sleep(STORE_POLL_S)
            try:
                if loaded is not None and await asyncio.to_thread(files) == loaded:
                    continue
                async with self.queue.whole(bounded=False):  # after the requests in flight
                    if self.engine is engine and files() != loaded:
                        log.warning("model %s was removed or replaced in the store; unloading it", name)
                        await self._stop_engine()
            except (OSError, ValueError, KeyError) as exc:  # a manifest edited by hand: look again
                log.warning("cannot read the manifest of %s: %s", name, exc)

    def set_radius(self, radius: Radius) -> None:
        """Reach this far from now on; the next placement surveys again (a wider radius finds
        more peers, a narrower fewer). A model already split stays until `release_split`."""
        self.policy = replace(self.policy, radius=radius)
        self._peers = None

    async def release_split(self) -> None:
        """Unload a model split over other nodes, after the requests in flight (the next request
        plans again, within the radius now set)."""
        if self.placement is None:
            return
        async with self.queue.whole():
            if self.placement is not None:
                log.info("unloading the model split over other nodes (radius now %s)", self.policy.radius.value)
                await self._stop_engine()

    def _lost(self, node_id: str) -> None:
        """A node stopped answering heartbeats (gone, or it unpaired us): stop the engine, whose
        RPC connection may otherwise wait on a silent tunnel; the stream then fails over."""
        if self.engine is not None and self.engine.alive:
            log.warning("node %s stopped answering; stopping the engine to fail over", node_id)
            self.engine.kill()

    async def _recover(self) -> None:
        """After a pooled engine died: drop nodes whose agent is gone, then plan again."""
        assert self.placement is not None
        self.excluded |= await self.placement.gone_nodes()
        await self._stop_engine()

    async def load(self, model: str, on_progress: Callable[[float], None] | None = None) -> EngineProcess:
        async with self.queue.whole():
            return await self._engine_for(model, on_progress)

    async def run(self, model: str, op: str, *, client: Client = None,
                  **fields: Any) -> AsyncGenerator[ReplyEvent, None]:
        """Wait for a slot, then yield the request's events (see EngineProcess.request).

        `client` is who asks (the server's name for the caller; None: anonymous): while others
        wait, a slot goes to the client holding the fewest. If a pooled engine dies mid-stream,
        the streams on it go on: one of them plans a new placement without the failed nodes, and
        each resumes on the new engine from the tokens it had.
        """
        if op in ("chat", "complete"):  # a seed asks for the same text every time (settings.prompt_reuse)
            fields.setdefault("exact", self.settings.prompt_reuse == "exact" or fields.get("seed") is not None)
        tracker = self.stats.start(model, op)
        try:
            async for event in self._run(tracker, model, op, client, **fields):
                yield event
            tracker.finished()
        except HearthError as exc:
            tracker.failed(exc.code)
            raise
        finally:
            tracker.cancelled()  # a no-op unless the reader left before the end

    async def _run(self, tracker: Tracker, model: str, op: str, client: Client,
                   **fields: Any) -> AsyncGenerator[ReplyEvent, None]:
        async with self.queue.slot(self._names.get(model, model), client):
            tracker.running()
            ids: list[int] = []
            sent: list[str] = []
            started, attempt = False, 0
            loss: Loss | None = None
            last_token = time.monotonic()
            while True:
                engine = await self._engine_for(model)
                generation = self._generation
                tracker.stat.served_by = "pool" if self.placement is not None else "machine"
                resume = {"resume": ids, "resumed_text": "".join(sent)} if ids and op not in ("embed", "score") else {}
                try:
                    async for event in engine.request(op, **fields, **resume):
                        if loss is not None and isinstance(event, (Token, Done)):  # the stream goes on
                            self._went_on(loss, last_token)
                            loss = None
                        if isinstance(event, Start):
                            if started:
                                continue
                            started = True
                        elif isinstance(event, Token):
                            ids.extend(event.ids)
                            sent.append(event.text)
                            tracker.token(len(event.ids))
                            last_token = time.monotonic()
                        elif isinstance(event, Done):
                            tracker.done(event)
                        yield event
                    return
                except EngineCrashed:
                    if attempt >= MAX_RECOVERIES:
                        raise
                    attempt += 1
                    loss = await self._recover_once(generation, time.monotonic())
                    if loss is None:
                        raise

    async def _recover_once(self, generation: int, t_crash: float) -> Loss | None:
        """The loss a stream that ran on engine `generation` resumes after; None when its engine
        was not pooled (the request fails; the next one starts a new engine). The first stream
        here recovers (drops the failed nodes and the engine); the others find it done."""
        async with self._switch:
            if generation != self._generation:
                return self._loss
            if self.placement is None:
                return None
            self.recoveries += 1
            before = set(self.excluded)
            names = {p.record.node_id: p.record.name for p in self.known_peers}  # before the survey drops them
            await self._recover()
            self._generation += 1
            self._loss = next_loss(self._loss, t_crash, self.excluded - before, names)
            return self._loss

    def _went_on(self, loss: Loss, stalled_since: float) -> None:
        """A stream went on over a new placement (its first token from the new engine): the first
        stream to do so after `loss` tells it."""
        if not loss.told:
            loss.told = True
            message, data = failover_event(loss, time.monotonic(), stalled_since, self.recoveries)
            self.feed.publish("failover", message, **data)

    def status(self) -> dict[str, Any]:
        e = self.engine
        p = self.placement
        return {
            "model": e.config.model_name if e else None,
            "engine_pid": e.pid if e and e.alive else None,
            "n_ctx": e.n_ctx if e else None,
            "busy": self.queue.busy, "waiting": self.queue.waiting,
            "slots": e.parallel if e else self.settings.parallel, "active": self.queue.active,
            "restarts": self.restarts, "recoveries": self.recoveries,
            "pooled": p is not None,
            "placement": p.plan.to_json()["assignments"] if p else None,
            "leases": [{"node": h.peer.record.name, "endpoint": h.endpoint} for h in p.held] if p else [],
        }

    async def close(self) -> None:
        await self._stop_engine()
