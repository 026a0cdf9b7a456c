"""The coordinator's end of the workers' WebSocket links (issue 10: workers dial out).

A worker opens one WebSocket to `wire.WORKER_LINK` and everything rides on it. This module is the
thin runtime around the sans-IO `CoordinatorSession` (hearth.public_swarm.protocol): per connection
it sends the Challenge, feeds every frame to `receive_text`, calls `tick` on a timer and performs the
actions (send a frame, close with the protocol's code). `LiveLinks` is the table of proven,
connected workers (node id → `Link`): `GET /v1/workers` lists them as live, and the job dispatcher
(`dispatch`) offers jobs through `Link.offer` and receives the session's job events through
`on_event`.

Bounds: at most `per_client` connections per client address (handshakes included; one more is
refused before the upgrade), frames over `MAX_LINK_FRAME_BYTES` are closed by the WebSocket layer
(code 1009), a connection that does not say Hello in time is closed (CloseCode.TIMEOUT), and a
second link of one node replaces the first (a reconnecting worker whose old socket is half dead).
A link the session closes for a receipt that does not verify or counts that do not add up
(CloseCode.RECEIPT_REFUSED, COUNT_MISMATCH) is reported to `on_suspect` (issue 11: it counts as a
failed check of that worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from hearth.public_swarm.coordinator.trust_rules import COUNT_MISMATCH, RECEIPT_MISMATCH
from hearth.public_swarm.coordinator.wire import ModelView, OfferedModel, WorkerView
from hearth.public_swarm.pricing import BITS_PER_WEIGHT, price_of_quant
from hearth.public_swarm.protocol import Action, Close, CoordinatorSession, Send, encode
from hearth.public_swarm.protocol.actions import CloseCode, Registered
from hearth.public_swarm.protocol.messages import ModelOffer, Offer

log = logging.getLogger("hearth.coordinator.links")

MAX_LINK_FRAME_BYTES = 1 << 20
"""The largest frame a worker may send (its biggest, a Tokens frame of 512 ids, is about half)."""
PER_CLIENT = 8
"""Links (and handshakes) at once from one client address."""
HEARTBEAT_S = 5.0
"""Both ends expect traffic this often; 3 silent intervals mean the peer is dead (the dispatcher then
moves its jobs). `hearth coordinator` takes another from HEARTH_LINK_HEARTBEAT_S (tests use 0.5)."""
HELLO_TIMEOUT_S = 10.0
SUSPICIOUS = {CloseCode.RECEIPT_REFUSED: RECEIPT_MISMATCH, CloseCode.COUNT_MISMATCH: COUNT_MISMATCH}
"""Close codes that say the worker lied about what it served, not that it broke down, and the
suspicion each is (`trust_rules`: both count as a failed check)."""
TRY_LATER = 1013
"""WebSocket close code 'try again later': too many connections from this address."""


def _reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    return text.encode("utf-8")[:120].decode("utf-8", "ignore")


@dataclass
class Link:
    """One worker's open connection: its session, its socket, and when it was last heard."""

    session: CoordinatorSession
    websocket: WebSocket
    peer: str
    opened_at: float
    """Wall-clock time the connection opened."""
    last_seen: float = 0.0
    """Wall-clock time of the last frame from the worker."""
    models: tuple[ModelOffer, ...] = ()
    """What the worker offered in its Hello."""
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    closed_for: str | None = None
    """Why this end closed it (the CloseCode's name), None if the worker went away."""

    async def perform(self, actions: Iterable[Action]) -> list[Action]:
        """Send and close as the session asked; the other actions (events) are returned."""
        events: list[Action] = []
        for action in actions:
            if self.closed:
                break
            match action:
                case Send():
                    async with self._send_lock:
                        await self.websocket.send_text(encode(action.message))
                case Close():
                    self.closed = True
                    self.closed_for = CloseCode(action.code).name.lower()
                    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                        await self.websocket.close(int(action.code), _reason(action.reason))
                case _:
                    events.append(action)
        return events

    async def offer(self, offer: Offer) -> list[Action]:
        """Offer a job (for the dispatcher): the events it yields, e.g. a local JobDeclined."""
        return await self.perform(self.session.offer(offer, time.monotonic()))


def model_view(m: ModelOffer) -> ModelView | None:
    """How `GET /v1/workers` shows a model offered in a Hello; None for one it cannot price."""
    if m.quant.upper() not in BITS_PER_WEIGHT:
        return None
    try:
        offered = OfferedModel(digest=m.digest, name=m.name, n_params=m.params, quantization=m.quant,
                               n_ctx=m.n_ctx, decode_tps=m.decode_tps)
        return ModelView(**offered.model_dump(),
                         credits_per_million_tokens=price_of_quant(m.params, m.quant).credits_per_mtok)
    except (ValidationError, ValueError):
        return None


class LiveLinks:
    """Proven workers connected now, and the WebSocket handler that admits them."""

    def __init__(self, *, per_client: int = PER_CLIENT, heartbeat_s: float = HEARTBEAT_S,
                 hello_timeout_s: float = HELLO_TIMEOUT_S,
                 on_event: Callable[[Link, Action], None] | None = None) -> None:
        self.per_client = per_client
        self.heartbeat_s = heartbeat_s
        self.hello_timeout_s = hello_timeout_s
        self.on_event = on_event
        """Called with each job event (JobAccepted, JobTokens, JobFinished, JobLost, ...): the dispatcher's."""
        self.on_link: Callable[[str, Link], None] | None = None
        """Called with (node id, link) when a worker links (the dispatcher records its standing and
        offers it the jobs waiting)."""
        self.on_unlink: Callable[[str, str], None] | None = None
        """Called with (node id, why: a short code) when a linked worker's link ends (not when a
        newer link of the same worker replaced it)."""
        self.on_suspect: Callable[[str, str], None] | None = None
        """Called with (node id, reason) when its link is closed for a lie (`SUSPICIOUS`)."""
        self.by_node: dict[str, Link] = {}
        self._per_peer: Counter[str] = Counter()

    def get(self, node_id: str) -> Link | None:
        return self.by_node.get(node_id)

    def holders(self, digest: str) -> list[Link]:
        """Linked workers that offered the weights with this sha256 digest."""
        return [link for link in self.by_node.values() if digest in link.session.models]

    def views(self) -> list[WorkerView]:
        """The linked workers as `GET /v1/workers` shows them, most recently heard first."""
        out = []
        for node_id, link in self.by_node.items():
            models = [v for m in link.models if (v := model_view(m)) is not None]
            out.append(WorkerView(node_id=node_id, name=node_id, models=models, hardware=None,
                                  registered_at=link.opened_at, last_seen=link.last_seen, linked=True))
        return sorted(out, key=lambda w: (-w.last_seen, w.node_id))

    async def serve(self, websocket: WebSocket) -> None:
        """Run one connection to its end (the route's whole body)."""
        peer = websocket.client.host if websocket.client else ""
        if self._per_peer[peer] >= self.per_client:
            log.info("refused a worker link from %s: %d open", peer, self._per_peer[peer])
            await websocket.close(TRY_LATER)  # before accept: the upgrade is answered 403
            return
        self._per_peer[peer] += 1
        try:
            await self._run(websocket, peer)
        finally:
            self._per_peer[peer] -= 1
            if self._per_peer[peer] <= 0:
                del self._per_peer[peer]

    async def _run(self, websocket: WebSocket, peer: str) -> None:
        session = CoordinatorSession(time.monotonic(), heartbeat_s=self.heartbeat_s,
                                     hello_timeout_s=self.hello_timeout_s)
        link = Link(session, websocket, peer, opened_at=time.time(), last_seen=time.time())
        await websocket.accept()
        ticker = asyncio.create_task(self._tick(link))
        try:
            await self._handle(link, session.start())
            while not link.closed:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                frame = message.get("text")
                if frame is None:
                    frame = message.get("bytes") or b""
                link.last_seen = time.time()
                await self._handle(link, session.receive_text(frame, time.monotonic()))
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:
            log.info("worker link from %s ended: %s", peer, exc)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            for event in session.close("The link ended."):  # open jobs come back as JobLost
                if not isinstance(event, Close):
                    self._event(link, event)
            if session.node_id is not None and self.by_node.get(session.node_id) is link:
                del self.by_node[session.node_id]
                log.info("worker %s unlinked", session.node_id)
                if self.on_unlink is not None:
                    self.on_unlink(session.node_id, link.closed_for or "disconnected")

    async def _tick(self, link: Link) -> None:
        period = min(1.0, self.heartbeat_s / 4)
        while not link.closed:
            await asyncio.sleep(period)
            try:
                await self._handle(link, link.session.tick(time.monotonic()))
            except (WebSocketDisconnect, OSError, RuntimeError) as exc:
                log.info("worker link from %s: tick failed: %s", link.peer, exc)
                return

    async def _handle(self, link: Link, actions: list[Action]) -> None:
        node_id = link.session.node_id
        for action in actions:
            if isinstance(action, Close) and action.code in SUSPICIOUS and node_id and self.on_suspect:
                self.on_suspect(node_id, f"{SUSPICIOUS[action.code]}: {action.reason}"[:300])
        for event in await link.perform(actions):
            if isinstance(event, Registered):
                old = self.by_node.get(event.node_id)
                link.models = event.models
                self.by_node[event.node_id] = link
                log.info("worker %s linked from %s with %d model(s)", event.node_id, link.peer, len(event.models))
                if old is not None and old is not link:
                    await old.perform(old.session.close("Replaced by a newer link of this worker."))
                if self.on_link is not None:
                    self.on_link(event.node_id, link)
            else:
                self._event(link, event)

    def _event(self, link: Link, event: Action) -> None:
        if self.on_event is not None:
            self.on_event(link, event)
        else:
            log.debug("worker %s: %s (no dispatcher yet)", link.session.node_id, event)
