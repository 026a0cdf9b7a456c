"""`GET /hearth/status` and `GET /hearth/events`: what `hearth dash` reads of a running server.

The status keeps the keys it always had (version, model, engine_pid, busy, placement, leases, and
with --radius public its old `public` keys) and adds the dashboard's (hearth.node_api.status.
ServeStatus). Neither route carries a secret: no API key, prompt or reply text, pairing secret
or full lease id; the coordinator's URL is shown without any user:password or query.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from hearth import __version__
from hearth.errors import HearthError
from hearth.escalation.pool import Engines, Escalating
from hearth.escalation.public_watch import PublicWatch
from hearth.identity import NodeIdentity
from hearth.models.facts import cached_facts
from hearth.node_api.feed import Feed
from hearth.node_api.feed_sse import StreamLimit, event_stream, heartbeat_s, parse_since
from hearth.node_api.status import SERVE_EVENTS_PATH, STATUS_PATH, NodeView, PublicView, ServeStatus
from hearth.orchestrator.dash_view import layer_map, node_views
from hearth.orchestrator.engines import EnginePool
from hearth.orchestrator.survey import local_capacity
from hearth.pairing.trust import TrustStore
from hearth.radius import Radius
from hearth.settings import Settings

log = logging.getLogger("hearth.http")


def public_coordinator(url: str | None) -> str | None:
    """The coordinator's scheme, host and port only."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}"[:256]


GATHER_S = 5.0
"""How long the status reuses its slow parts (layer map, devices, paired peers) while the loaded
model and its placement stay the same: free memory shown may be this old."""


class StatusView:
    """Builds a ServeStatus from the pool; the slow parts (model facts, device) off the loop."""

    def __init__(self, settings: Settings, pool: Engines) -> None:
        self.settings, self.pool = settings, pool
        self.base: EnginePool = pool.pool if isinstance(pool, Escalating) else pool
        self.started_at = time.time()
        identity = NodeIdentity.load_or_create(settings.home)
        self.here_id = identity.node_id
        self.watch = PublicWatch(identity, settings.worker_page_port)
        """Balance, holds, the swarm's counts, this machine's contributing: read in the background."""
        hooks = getattr(pool, "on_close", None)  # the Steerable's: the server stops
        if isinstance(hooks, list):
            hooks.append(self.watch.close)
        self.here_name = socket.gethostname()[:128]
        self._gathered: tuple[tuple[int, int], float, dict[str, Any]] | None = None

    def _gather(self) -> dict[str, Any]:
        """Blocking reads: the loaded model's layer count, this machine's device, paired peers."""
        pool = self.base
        engine, placement = pool.engine, pool.placement
        lmap = None
        if engine is not None:
            name = engine.config.model_name
            n_layers = cached_facts(pool.store, name).n_layers
            lmap = layer_map(name, n_layers, placement.plan if placement else None, self.here_id, self.here_name)
        cap = local_capacity(pool.policy.max_memory)
        here = NodeView(node_id=self.here_id, name=self.here_name, radius="machine", via="local",
                        device=cap.device[:256], state="holding" if engine is not None else "up",
                        free_bytes=cap.free_bytes, lent_bytes=cap.free_bytes)
        holding: dict[str, int] = {}
        for h in placement.held if placement else []:
            holding[h.peer.record.node_id] = holding.get(h.peer.record.node_id, 0) + 1
        paired = TrustStore(self.settings.home).all()
        nodes = node_views(here, [*pool.known_peers, *pool.lost_peers], paired, holding, set(pool.excluded))
        return {"layer_map": lmap, "nodes": nodes}

    async def answer(self) -> dict[str, Any]:
        old = self.pool.status()
        base = self.base
        key = (id(base.engine), id(base.placement))
        if self._gathered is not None and self._gathered[0] == key and time.monotonic() - self._gathered[1] < GATHER_S:
            gathered = self._gathered[2]  # a dashboard polls every second: the engine's CPU matters more
        else:
            try:
                gathered = await asyncio.to_thread(self._gather)
                self._gathered = (key, time.monotonic(), gathered)
            except (HearthError, OSError, ValueError, RuntimeError) as exc:  # a model removed under us
                log.warning("status: %s", exc)
                gathered = {}
        requests, throughput = base.stats.view(base.queue.waiting)
        public = base.stats.public.model_copy()
        steered = getattr(self.pool, "radius", None)  # the control routes' Steerable: its radius now
        public_now = steered is Radius.PUBLIC if isinstance(steered, Radius) else isinstance(self.pool, Escalating)
        radius: Any = "public" if public_now else base.policy.radius.value
        reached = self.pool.coordinator if public_now and isinstance(self.pool, Escalating) else ""
        self.watch.figures(reached or None).fill(public)
        if public_now and isinstance(self.pool, Escalating):
            public.enabled, public.max_price = True, self.settings.max_price
        # also while not public: the coordinator it would escalate to, whose consent a dashboard asks
        public.coordinator = public_coordinator(reached or self.settings.coordinator)
        status = ServeStatus(
            version=__version__, model=old["model"], engine_pid=old["engine_pid"], n_ctx=old["n_ctx"],
            busy=old["busy"], waiting=old["waiting"], slots=old["slots"], active=old["active"],
            restarts=old["restarts"], recoveries=old["recoveries"],
            pooled=old["pooled"], radius=radius, requests=requests, throughput=throughput, public=public,
            started_at=self.started_at, **gathered)
        answer = status.model_dump(mode="json")
        answer["placement"], answer["leases"] = old["placement"], old["leases"]
        if "public" in old:  # the keys --radius public always had
            old_public = {k: v for k, v in old["public"].items() if k != "coordinator"}
            answer["public"] = old_public | PublicView.model_validate(answer["public"]).model_dump(mode="json")
        return answer


def add_routes(app: FastAPI, settings: Settings, pool: Engines, feed: Feed) -> None:
    view = StatusView(settings, pool)
    limit = StreamLimit()

    @app.get(STATUS_PATH)
    async def status() -> JSONResponse:
        return JSONResponse(await view.answer())

    @app.get(SERVE_EVENTS_PATH, response_model=None)
    async def events(request: Request, since: str | None = None,
                     every: float = Depends(heartbeat_s)) -> StreamingResponse:
        return event_stream(request, feed, parse_since(since, request.headers.get("last-event-id")), every, limit)
