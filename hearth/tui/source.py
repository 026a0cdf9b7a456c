"""Where the dashboard's data comes from: a `DashSource`. The live one reads a running `hearth serve`
(`DashClient`) and looks for the circle the way `hearth peers` does; a fixed one gives the same
shapes from memory, so snapshot tests draw the very same widgets with data that never changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hearth.errors import HearthError
from hearth.identity import NodeIdentity
from hearth.node_api.status import DashEvent, ServeStatus
from hearth.node_api.wire import NodeStatus
from hearth.radius import Radius
from hearth.settings import Settings
from hearth.tui.client import DashClient, NodeFeedClient

CIRCLE_EVERY_S = 30.0
"""How often the live source looks for the circle again (mDNS answers take seconds)."""


@dataclass(frozen=True)
class CirclePeer:
    """One machine of the circle as `hearth peers` lists it (no secret)."""

    name: str
    node_id: str
    radius: str
    """'household' (mDNS or --peer) or 'trusted' (paired)."""
    address: str
    state: str
    """'ready', 'full', 'unreachable' or why it was not usable."""
    free_bytes: int | None = None

    @property
    def reachable(self) -> bool:
        return self.state in ("ready", "full")


@dataclass(frozen=True)
class Circle:
    """The nodes found and the paired peers that did not answer, plus what was skipped."""

    peers: tuple[CirclePeer, ...] = ()
    problems: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)
    """`hearth peers --json`'s own shape, for `hearth dash --once --json`."""

    def of_radius(self, radius: str) -> list[CirclePeer]:
        return [p for p in self.peers if p.radius == radius]


async def look_for_circle(settings: Settings, wait: float) -> Circle:
    """What `hearth peers` shows, by the same function."""
    from hearth.orchestrator.survey import circle_report

    report = await circle_report(settings, wait, [])
    found = [CirclePeer(p.record.name, p.record.node_id, p.radius.value, str(p.agent),
                        ("full" if p.record.full else "ready") if p.usable else (p.problem or "unverified"),
                        p.record.free_bytes) for p in report.found]
    missing = [CirclePeer(t.info.name, t.node_id, Radius.TRUSTED.value, t.info.tunnel_address, "unreachable")
               for t in report.missing]
    return Circle(tuple(found + missing), tuple(report.problems), report.to_json())


class NodeReader(Protocol):
    """The node agents' side of a source: a node's status and its event stream, by HOST:PORT."""

    async def node_status(self, endpoint: str) -> NodeStatus: ...

    def node_events(self, endpoint: str, since: int) -> AsyncIterator[DashEvent]: ...


def node_client(settings: Settings) -> NodeFeedClient:
    """The client of the circle's node agents, signed with this machine's identity (unsigned when
    it cannot be read: household nodes still answer; paired-only ones say they refuse)."""
    try:
        identity: NodeIdentity | None = NodeIdentity.load_or_create(settings.home)
    except (HearthError, OSError):
        identity = None
    return NodeFeedClient(identity)


class DashSource(Protocol):
    """What `DashApp` reads. Each call may raise a HearthError (the app shows it and tries again)."""

    label: str

    async def status(self) -> ServeStatus: ...

    def events(self, since: int) -> AsyncIterator[DashEvent]: ...

    async def circle(self) -> Circle: ...

    def now(self) -> float: ...

    def node_reader(self) -> NodeReader | None:
        """Where the nodes the status and the circle name are read (None: nowhere)."""

    async def aclose(self) -> None: ...


class LiveSource:
    """A running `hearth serve` and this machine's view of the circle."""

    def __init__(self, client: DashClient, settings: Settings, wait: float = 2.0) -> None:
        self.client, self.settings, self.wait = client, settings, wait
        self.label = client.url
        self._nodes: NodeFeedClient | None = None

    async def status(self) -> ServeStatus:
        return await self.client.status()

    def events(self, since: int) -> AsyncIterator[DashEvent]:
        return self.client.events(since)

    async def circle(self) -> Circle:
        return await look_for_circle(self.settings, self.wait)

    def now(self) -> float:
        return time.time()

    def node_reader(self) -> NodeReader:
        if self._nodes is None:
            self._nodes = node_client(self.settings)
        return self._nodes

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._nodes is not None:
            await self._nodes.aclose()


class FixedSource:
    """Fixed data (snapshot tests, demos): the status, the events (sent once), the circle, a clock."""

    def __init__(self, status: ServeStatus, events: Sequence[DashEvent] = (), circle: Circle | None = None,
                 now: float = 1_750_000_000.0, label: str = "http://127.0.0.1:11435") -> None:
        self._status, self._events, self._circle, self._now = status, list(events), circle or Circle(), now
        self.label = label

    async def status(self) -> ServeStatus:
        return self._status

    async def events(self, since: int) -> AsyncIterator[DashEvent]:
        for event in self._events:
            if event.seq > since:
                yield event
        await asyncio.Event().wait()  # a quiet stream stays open, as a real one does

    async def circle(self) -> Circle:
        return self._circle

    def now(self) -> float:
        return self._now

    def node_reader(self) -> NodeReader | None:
        return None

    async def aclose(self) -> None:
        return None
