"""What the dashboard reads (issue 12): `hearth serve`'s and `hearth node`'s status and their event
stream, on the wire. One definition for both ends: the server and the node agent build these, the
dashboard (hearth.tui) and scripts parse them.

Read-only and free of secrets: no API key, pairing code, lease id in full, prompt or output text,
signing key or coordinator token ever goes into one of these (tests check every route's answer
for them). Everything here is bounded (lists, strings), since a dashboard may read another
machine's server.

- `GET /hearth/status` (serve) -> `ServeStatus`; `GET /hearth/events` (serve) and
  `GET /v1/node/events` (node) -> Server-Sent Events, one `DashEvent` per event:
  `id: <seq>`, `event: <kind>`, `data: <DashEvent JSON>`; a comment line every
  `HEARTBEAT_S` keeps idle streams open. `?since=<seq>` (or `Last-Event-ID`) replays what the
  feed still holds after that sequence number first.
- `GET /v1/node` (node) stays `hearth.node_api.wire.NodeStatus`.
- The coordinator: `GET /v1/swarm` (its status, unsigned counts) and `GET /v1/swarm/events`
  (SWARM_EVENTS_PATH), the same SSE of `DashEvent`s for the swarm as a whole.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STATUS_PATH = "/hearth/status"
SERVE_EVENTS_PATH = "/hearth/events"
NODE_EVENTS_PATH = "/v1/node/events"
SWARM_EVENTS_PATH = "/v1/swarm/events"
HEARTBEAT_S = 15.0
"""An idle event stream sends a comment this often."""
MAX_NODES = 256
MAX_REQUESTS = 50
"""The most recent requests a status lists."""
MAX_SAMPLES = 60
"""Throughput samples a status carries (one per `SAMPLE_S`: the last five minutes)."""
SAMPLE_S = 5.0

EventKind = Literal[
    "model_loaded", "model_unloaded", "load_progress",
    "request_started", "request_done", "request_failed",
    "failover", "lease_taken", "lease_released", "lease_expired",
    "node_joined", "node_left", "node_draining",
    "paired", "unpaired",
    "public_job", "job_settled", "request_escalated", "settings_changed", "notice",
    # the coordinator's stream (GET /v1/swarm/events): the swarm as a whole, counts and short ids only
    "worker_joined", "worker_left", "job_queued", "job_dispatched", "job_done", "job_failed", "check_done",
]
"""Every kind an event stream carries; a newer server may add kinds (a reader shows them as text)."""


class _Wire(BaseModel):
    """Extra fields are ignored: a newer server still talks to an older dashboard."""

    model_config = ConfigDict(extra="ignore")


class LayerSpan(_Wire):
    """A run of consecutive layers held by one node."""

    node_id: str = Field(max_length=64)
    name: str = Field(max_length=128)
    first: int = Field(ge=0, le=100_000)
    """Index of its first layer (0-based)."""
    count: int = Field(ge=0, le=100_000)
    local: bool
    """This machine (the engine's own memory) rather than a leased node."""


class LayerMap(_Wire):
    """How the loaded model is split: spans in layer order covering 0..n_layers-1, and which node
    holds the output head (llama.cpp puts it with the last layers)."""

    model: str = Field(max_length=256)
    n_layers: int = Field(ge=0, le=100_000)
    spans: list[LayerSpan] = Field(default_factory=list, max_length=MAX_NODES)
    output_node: str | None = Field(default=None, max_length=64)


class NodeView(_Wire):
    """One machine of the circle as the orchestrator sees it."""

    node_id: str = Field(max_length=64)
    name: str = Field(max_length=128)
    radius: Literal["machine", "household", "trusted"]
    via: Literal["local", "lan", "wireguard", "sealed", "static"] | None = None
    device: str = Field(default="", max_length=256)
    state: Literal["up", "holding", "draining", "lost", "unreachable", "unknown"] = "unknown"
    """up: reachable, nothing leased from it; holding: it holds layers of the loaded model."""
    lent_bytes: int | None = Field(default=None, ge=0)
    """The memory it lends (its budget)."""
    used_bytes: int | None = Field(default=None, ge=0)
    """Leased out of that budget (by anyone)."""
    free_bytes: int | None = Field(default=None, ge=0)
    leases: int = Field(default=0, ge=0)
    rtt_ms: float | None = Field(default=None, ge=0)
    address: str | None = Field(default=None, max_length=256)
    """Its node agent's HOST:PORT as this server reaches it (where `GET /v1/node` and its events are)."""


class RequestStat(_Wire):
    """One recent request (no prompt, no output: counts and timings only)."""

    id: str = Field(max_length=64)
    model: str = Field(max_length=256)
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    served_by: Literal["machine", "pool", "public"] = "machine"
    started_at: float
    ttft_ms: float | None = Field(default=None, ge=0)
    tokens: int = Field(default=0, ge=0)
    tokens_per_s: float | None = Field(default=None, ge=0)
    cost_credits: int | None = Field(default=None, ge=0)
    """Micro-credits, when the public swarm served it."""


class Throughput(_Wire):
    """Generated tokens per second, one sample per `SAMPLE_S` seconds, oldest first."""

    sample_s: float = SAMPLE_S
    samples: list[float] = Field(default_factory=list, max_length=MAX_SAMPLES)
    ttft_ms_p50: float | None = None
    queue_depth: int = Field(default=0, ge=0)


class PublicJob(_Wire):
    id: str = Field(max_length=64)
    model: str = Field(max_length=256)
    tokens: int = Field(ge=0)
    cost_credits: int = Field(ge=0)
    at: float


class PublicView(_Wire):
    """The public radius from this server: whether it may reach it, and what it spent."""

    enabled: bool = False
    """--radius public (or changed to it at run time)."""
    coordinator: str | None = Field(default=None, max_length=256)
    connected: bool = False
    balance: int | None = None
    """Micro-credits; None when not known (no coordinator, or not asked yet)."""
    held: int | None = None
    max_price: int | None = None
    """The price ceiling: credits per million tokens."""
    spent: int = Field(default=0, ge=0)
    """Micro-credits this server spent since it started."""
    recent: list[PublicJob] = Field(default_factory=list, max_length=MAX_REQUESTS)
    contributing: bool = False
    """A `hearth contribute` runs on this machine (its page on loopback answered)."""
    jobs_served: int = Field(default=0, ge=0)
    earned: int = Field(default=0, ge=0)
    swarm_workers: int | None = Field(default=None, ge=0)
    """The coordinator's live workers (its `GET /v1/swarm`); None when not asked or not known."""
    swarm_queued: int | None = Field(default=None, ge=0)
    checked_at: float | None = None
    """When balance, holds and the swarm's counts were last read from the coordinator."""
    problem: str | None = Field(default=None, max_length=120)
    """Why the last reading of the coordinator failed (short, no URL); None when it answered."""


class ServeStatus(_Wire):
    """`GET /hearth/status`. The first fields are the ones it always had (scripts read them)."""

    version: str = Field(max_length=64)
    model: str | None = Field(default=None, max_length=256)
    engine_pid: int | None = None
    n_ctx: int | None = None
    busy: bool | int = False
    waiting: int = 0
    slots: int | None = Field(default=None, ge=1, le=64)
    """Requests the loaded engine serves at once (HEARTH_PARALLEL or the default chosen from
    memory); before a model is loaded, HEARTH_PARALLEL if set, else None."""
    active: int = Field(default=0, ge=0)
    """Requests holding a slot now."""
    restarts: int = 0
    recoveries: int = 0
    pooled: bool = False
    radius: Literal["machine", "household", "trusted", "public"] = "household"
    layer_map: LayerMap | None = None
    nodes: list[NodeView] = Field(default_factory=list, max_length=MAX_NODES)
    requests: list[RequestStat] = Field(default_factory=list, max_length=MAX_REQUESTS)
    throughput: Throughput = Field(default_factory=Throughput)
    public: PublicView = Field(default_factory=PublicView)
    started_at: float | None = None


class DashEvent(_Wire):
    """One event of a stream: its sequence number (per server or node, from 1, no gaps), when,
    its kind, one human line, and a few facts (numbers and short strings only)."""

    seq: int = Field(ge=1)
    at: float
    kind: str = Field(max_length=32)
    message: str = Field(max_length=500)
    data: dict[str, str | int | float | bool | None] = Field(default_factory=dict, max_length=16)
