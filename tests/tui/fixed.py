"""Deterministic dashboard data: two nodes, a pooled layer map, throughput samples, a few events,
a public view, a circle with a household node and two paired peers (one unreachable)."""

from __future__ import annotations

from hearth.node_api.status import (
    DashEvent,
    LayerMap,
    LayerSpan,
    NodeView,
    PublicJob,
    PublicView,
    RequestStat,
    ServeStatus,
    Throughput,
)
from hearth.tui.source import Circle, CirclePeer, FixedSource

NOW = 1_750_000_000.0
G = 10**9


def fixed_status() -> ServeStatus:
    return ServeStatus(
        version="0.12.0", model="qwen2.5-7b-instruct", engine_pid=4242, n_ctx=4096, busy=1, waiting=0,
        pooled=True, radius="trusted", started_at=NOW - 3725,
        layer_map=LayerMap(model="qwen2.5-7b-instruct", n_layers=28, output_node="n-den", spans=[
            LayerSpan(node_id="local", name="this machine", first=0, count=16, local=True),
            LayerSpan(node_id="n-den", name="den", first=16, count=12, local=False)]),
        nodes=[
            NodeView(node_id="local", name="kitchen (here)", radius="machine", via="local", device="CPU 16 cores",
                     state="holding", lent_bytes=8 * G, used_bytes=5 * G, free_bytes=3 * G, leases=0),
            NodeView(node_id="n-den", name="den", radius="household", via="lan", device="Apple M2",
                     state="holding", lent_bytes=12 * G, used_bytes=4 * G, free_bytes=8 * G, leases=1, rtt_ms=1.8),
        ],
        requests=[RequestStat(id="r1", model="qwen2.5-7b-instruct", state="running", served_by="pool",
                              started_at=NOW - 2, ttft_ms=310.0, tokens=41, tokens_per_s=12.4)],
        throughput=Throughput(samples=[0.0, 3.5, 11.0, 12.5, 12.1, 0.0, 0.0, 9.8, 12.4, 12.6, 12.2, 12.4],
                              ttft_ms_p50=305.0, queue_depth=1),
        public=PublicView(enabled=True, coordinator="https://swarm.example", connected=True, balance=12_500_000,
                          held=250_000, max_price=300, spent=1_750_000, contributing=True, jobs_served=7,
                          earned=3_200_000, swarm_workers=14, swarm_queued=2, recent=[
                              PublicJob(id="j1", model="llama3.1-70b", tokens=512, cost_credits=900_000, at=NOW - 600),
                              PublicJob(id="j2", model="llama3.1-70b", tokens=380, cost_credits=850_000, at=NOW - 60)]),
    )


def fixed_events() -> list[DashEvent]:
    rows = [("model_loaded", "qwen2.5-7b-instruct loaded: 16 layers here, 12 on den"),
            ("lease_taken", "den lent 4.0 GB (lease …7f3a)"),
            ("request_done", "request done: 128 tokens, 12.4 tok/s, TTFT 310 ms"),
            ("failover", "attic lost: failover took 840 ms"),
            ("job_settled", "public job settled: 380 tokens, 0.85 credits")]
    return [DashEvent(seq=i + 1, at=NOW - 100 + 10 * i, kind=k, message=m) for i, (k, m) in enumerate(rows)]


def fixed_circle() -> Circle:
    return Circle((CirclePeer("den", "n-den", "household", "192.168.1.20:11436", "ready", 8 * G),
                   CirclePeer("cabin", "n-cab", "trusted", "fd00::5", "ready", 4 * G),
                   CirclePeer("attic", "n-att", "trusted", "fd00::6", "unreachable")))


def fixed_source() -> FixedSource:
    return FixedSource(fixed_status(), fixed_events(), fixed_circle(), now=NOW)
