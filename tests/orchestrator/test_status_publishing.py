"""What the engine pool publishes and records for the dashboard, at the unit level: the pool's
engine and its recovery are recording stand-ins here (a real failover needs nodes in network
namespaces: tests/rpc_pool/test_pool_lan.py, which checks `recoveries`; the event it then
publishes is the `_failed_over` call tested here). Also the pure parts: throughput windows,
the layer map of a pooled plan, the node list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.discovery.records import DeviceInfo, PeerRecord
from hearth.engine.events import Done, Start, Token
from hearth.errors import EngineCrashed, InvalidRequest
from hearth.ggml.hello import RpcVersion
from hearth.node_api.feed import Feed
from hearth.node_api.status import MAX_SAMPLES, SAMPLE_S, NodeView
from hearth.orchestrator.dash_view import layer_map, node_views
from hearth.orchestrator.engines import EnginePool
from hearth.orchestrator.peers import Peer
from hearth.orchestrator.planner import Assignment, NodeCapacity, Plan
from hearth.orchestrator.stats import RequestStats, Throughputs
from hearth.radius import Radius
from hearth.settings import Settings

DONE = Done("r", "stop", 3, 2, 12.5, 40.0, 55.0)


class Engine:
    """Stands in for EngineProcess.request: two tokens, or a crash after the first."""

    def __init__(self, crash: bool, at_once: bool = False) -> None:
        self.crash, self.at_once = crash, at_once

    async def request(self, op: str, **fields: Any) -> AsyncGenerator[object, None]:
        yield Start("r", 3)
        if self.at_once:
            raise EngineCrashed("lost again before its first token")
        yield Token("r", "a", (1,))
        if self.crash:
            raise EngineCrashed("the RPC server went away")
        yield Token("r", "b", (2,))
        yield DONE


def pool_with(tmp_path: Path, engines: list[Engine], feed: Feed) -> EnginePool:
    pool = EnginePool(Settings(home=tmp_path), feed=feed)
    queue = iter(engines)

    async def engine_for(model: str, on_progress: object = None) -> Engine:
        return next(queue)

    async def recover() -> None:
        pool.excluded |= {"node-b"}

    pool._engine_for = engine_for  # type: ignore[method-assign,assignment]
    pool._recover = recover  # type: ignore[method-assign]
    pool.placement = object()  # type: ignore[assignment]  # pooled: a crash fails over
    return pool


def run(pool: EnginePool) -> list[object]:
    async def go() -> list[object]:
        return [e async for e in pool.run("m", "chat", messages=[])]

    return asyncio.run(go())


def test_a_recovered_crash_publishes_failover_with_its_time_and_the_lost_nodes(tmp_path: Path) -> None:
    feed = Feed()
    pool = pool_with(tmp_path, [Engine(crash=True), Engine(crash=False)], feed)
    events = run(pool)
    assert events[-1] == DONE and pool.recoveries == 1
    kinds = [e.kind for e in feed.since(0)]
    assert kinds == ["request_started", "failover", "request_done"]
    failover = feed.since(0)[1]
    assert failover.data["lost"] == "node-b" and isinstance(failover.data["ms"], int) and failover.data["ms"] >= 0
    assert failover.data["recoveries"] == 1 and "failover took" in failover.message
    assert isinstance(failover.data["stalled_ms"], int) and failover.data["stalled_ms"] >= failover.data["ms"]
    (stat,) = pool.stats.recent
    assert stat.state == "done" and stat.served_by == "pool" and stat.ttft_ms == 12.5
    assert stat.tokens_per_s == 55.0 and stat.tokens >= 2


def test_a_failover_is_told_once_when_the_stream_goes_on_even_after_two_losses(tmp_path: Path) -> None:
    """Lost again before its first token: one failover, counted from the first loss, told when
    the stream really went on (not when an engine was merely loaded)."""
    feed = Feed()
    pool = pool_with(tmp_path, [Engine(crash=True), Engine(crash=True, at_once=True), Engine(crash=False)], feed)
    events = run(pool)
    assert events[-1] == DONE and pool.recoveries == 2
    kinds = [e.kind for e in feed.since(0)]
    assert kinds == ["request_started", "failover", "request_done"]
    assert feed.since(0)[1].data["recoveries"] == 2


def test_a_failed_request_is_published_with_its_code_only(tmp_path: Path) -> None:
    feed = Feed()
    pool = EnginePool(Settings(home=tmp_path), feed=feed)

    async def refuse(model: str, on_progress: object = None) -> object:
        raise InvalidRequest("secret prompt text never goes here")

    pool._engine_for = refuse  # type: ignore[method-assign,assignment]
    with pytest.raises(InvalidRequest):
        run(pool)
    started, failed = feed.since(0)
    assert failed.kind == "request_failed" and failed.data["code"] == "invalid_request"
    assert "secret" not in failed.model_dump_json() and pool.stats.recent[0].state == "failed"


def test_a_reader_that_leaves_marks_the_request_cancelled(tmp_path: Path) -> None:
    pool = pool_with(tmp_path, [Engine(crash=False)], Feed())

    async def go() -> None:
        events = pool.run("m", "chat")
        await anext(events)
        await events.aclose()

    asyncio.run(go())
    assert pool.stats.recent[0].state == "cancelled" and not pool.stats.in_flight


def peer(node_id: str, name: str, radius: Radius = Radius.HOUSEHOLD, source: str = "mdns") -> Peer:
    record = PeerRecord(node_id, name, "0.1", RpcVersion(3, 0, 0), 11436, (DeviceInfo("CPU", 100, 400),),
                        ("192.0.2.7",))
    return Peer(record, source, True, True, radius=radius)


def test_nodes_joining_and_leaving_between_surveys(tmp_path: Path) -> None:
    feed = Feed()
    pool = EnginePool(Settings(home=tmp_path), feed=feed)
    pool._note_nodes(None, [peer("a", "attic")])  # the first survey: nothing to compare
    pool._note_nodes([peer("a", "attic")], [peer("b", "barn")])
    assert {(e.kind, e.data["name"]) for e in feed.since(0)} == {("node_joined", "barn"), ("node_left", "attic")}


def test_a_node_lost_to_a_failover_stays_listed_as_lost(tmp_path: Path) -> None:
    """The survey after a failover no longer lists the lost node; the pool remembers it (the
    status shows it "lost"), until it is no longer excluded."""
    pool = EnginePool(Settings(home=tmp_path), feed=Feed())
    before, found = [peer("a", "attic"), peer("b", "barn")], [peer("a", "attic")]
    pool.excluded = {"b"}
    pool._remember_gone(before, found)  # what peers(refresh=True) does with the survey's answer
    pool._peers = found
    assert [p.record.name for p in pool.lost_peers] == ["barn"]
    here = NodeView(node_id="me", name="desk", radius="machine", via="local", state="up")
    views = node_views(here, [*pool.known_peers, *pool.lost_peers], [], {}, set(pool.excluded))
    assert [(v.name, v.state) for v in views] == [("desk", "up"), ("attic", "up"), ("barn", "lost")]
    pool.excluded = set()  # a new placement that may use it again
    assert pool.lost_peers == []


def test_throughput_windows_count_tokens_per_second_with_zeros_between() -> None:
    now = [1000.0]
    t = Throughputs(lambda: now[0])
    assert t.samples() == []
    t.add(50)
    now[0] += 2 * SAMPLE_S
    t.add(10)
    now[0] += 1.0
    samples = t.samples()
    assert samples[0] == 50 / SAMPLE_S and samples[1] == 0
    assert len(samples) == 3
    now[0] += 1000 * SAMPLE_S
    assert len(t.samples()) == MAX_SAMPLES and set(t.samples()) == {0}


@given(st.lists(st.tuples(st.floats(0, 50), st.integers(0, 500)), max_size=40))
def test_samples_are_bounded_and_never_negative(steps: list[tuple[float, int]]) -> None:
    now = [0.0]
    t = Throughputs(lambda: now[0])
    for dt, n in steps:
        now[0] += dt
        t.add(n)
    s = t.samples()
    assert len(s) <= MAX_SAMPLES and all(x >= 0 for x in s)


def test_public_jobs_add_up_to_what_was_spent() -> None:
    feed = Feed()
    stats = RequestStats(feed)
    stats.public_job("job-1", "m", 40, 240)
    stats.public_job("job-2", "m", 10, 60)
    assert stats.public.spent == 300 and [j.id for j in stats.public.recent] == ["job-1", "job-2"]
    assert [e.data["cost_credits"] for e in feed.since(0)] == [240, 60]
    requests, throughput = stats.view(queue_depth=2)
    assert requests == [] and throughput.queue_depth == 2 and throughput.ttft_ms_p50 is None


def test_a_pooled_layer_map_follows_the_plan_with_the_head_on_the_last_span() -> None:
    here = NodeCapacity("local", "this machine", "CPU", 10, local=True)
    barn = NodeCapacity("node-b", "barn", "CPU", 10, endpoint="http://192.0.2.7:11436")
    plan = Plan("m", 2048, 10, (Assignment(barn, 18, 5, "fits"), Assignment(NodeCapacity("x", "x", "CPU", 0), 0, 0, ""),
                                Assignment(here, 12, 5, "local")))
    lm = layer_map("m", 30, plan, "me", "desk")
    assert [(s.node_id, s.first, s.count, s.local) for s in lm.spans] == [("node-b", 0, 18, False),
                                                                            ("me", 18, 12, True)]
    assert lm.output_node == "me" and sum(s.count for s in lm.spans) == lm.n_layers
    solo = layer_map("m", 30, None, "me", "desk")
    assert [(s.first, s.count) for s in solo.spans] == [(0, 30)] and solo.output_node == "me"


def test_node_views_list_this_machine_found_nodes_then_unreachable_paired_peers() -> None:
    from hearth.pairing.trust import TrustedPeer

    here = NodeView(node_id="me", name="desk", radius="machine", via="local", state="up")
    found = [peer("b", "barn"), peer("c", "cabin", Radius.TRUSTED, "paired"), peer("b", "barn")]

    class Info:
        node_id, name = "d", "dacha"

    gone = TrustedPeer.__new__(TrustedPeer)
    object.__setattr__(gone, "info", Info())
    views = node_views(here, found, [gone], {"b": 2}, {"c"})
    assert [(v.node_id, v.radius, v.state) for v in views] == [
        ("me", "machine", "up"), ("b", "household", "holding"), ("c", "trusted", "lost"), ("d", "trusted", "unreachable")]
    assert views[1].leases == 2 and views[1].via == "lan" and views[2].via == "wireguard"
    assert views[1].free_bytes == 100 and views[1].lent_bytes is None  # the node's own to tell
    assert views[1].address == "192.0.2.7:11436" and views[0].address is None and views[3].address is None


def test_a_reply_without_done_still_ends_as_done(tmp_path: Path) -> None:
    """Embeddings and scores end with their own event, not Done."""
    from hearth.engine.events import Embedding

    class Embedder:
        async def request(self, op: str, **fields: Any) -> AsyncGenerator[object, None]:
            yield Embedding("r", 4)

    feed = Feed()
    pool = pool_with(tmp_path, [Embedder()], feed)  # type: ignore[list-item]
    run(pool)
    assert [e.kind for e in feed.since(0)] == ["request_started", "request_done"]
    assert pool.stats.recent[0].state == "done" and pool.stats.recent[0].ttft_ms is None


def test_narrowing_the_radius_forgets_the_survey_and_unloads_a_split_model(tmp_path: Path) -> None:
    """What the dashboard's radius action does to the pool (Steerable): the next placement
    surveys again, and a model split over other nodes is unloaded after the request in flight."""
    pool = EnginePool(Settings(home=tmp_path), feed=Feed())
    pool._peers = []
    stopped: list[bool] = []

    async def stop() -> None:
        stopped.append(True)
        pool.placement = None

    pool._stop_engine = stop  # type: ignore[method-assign]
    pool.set_radius(Radius.MACHINE)
    assert pool.policy.radius is Radius.MACHINE and pool._peers is None
    asyncio.run(pool.release_split())
    assert stopped == []  # nothing split: nothing to unload
    pool.placement = object()  # type: ignore[assignment]
    asyncio.run(pool.release_split())
    assert stopped == [True] and pool.placement is None
