"""`DashApp`: the household cluster at a glance. Four loops feed it, each touching only the panels
its data changed: the status every two seconds (and half a second after a request starts or ends,
or at once after an event that changes the picture), the event stream as events come (one log line each,
never a redraw per token), the circle (mDNS, pairings) every half minute, and the nodes' own agents
every five seconds (`hearth.tui.nodewatch`: their budgets, leases, RTT, and their events under their
names). Actions (keys and the command palette) are `hearth.tui.commands`'."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.css.query import NoMatches
from textual.widgets import Footer, Static
from textual.worker import Worker

from hearth.errors import HearthError
from hearth.node_api.status import DashEvent, ServeStatus
from hearth.tui import commands
from hearth.tui.nodemerge import Reading, Target, merge, targets
from hearth.tui.nodewatch import READ_EVERY_S, NodeWatch
from hearth.tui.source import CIRCLE_EVERY_S, Circle, DashSource
from hearth.tui.widgets.events import EventLog, event_line
from hearth.tui.widgets.layer_map import LayerMapView
from hearth.tui.widgets.nodes import NodesView
from hearth.tui.widgets.palette import BAD, MUTED
from hearth.tui.widgets.public import PublicPanel
from hearth.tui.widgets.radii import RadiiFacts, RadiiPanel
from hearth.tui.widgets.throughput import ThroughputPanel

RETRY_S = 2.0
POKING = frozenset({"model_loaded", "model_unloaded", "failover", "node_joined", "node_left", "node_draining",
                    "lease_taken", "lease_released", "lease_expired", "paired", "unpaired", "settings_changed",
                    "job_settled", "public_job"})
"""Events after which the status is read at once rather than at the next tick."""
QUICK = frozenset({"request_started", "request_done", "request_failed", "request_escalated"})
"""Events after which the status is read soon (busy, queue, time to first token), at most every
MIN_GAP_S: a busy server's many requests do not become many status reads."""
POLL_S = 2.0
"""The status is read this often when no event says it changed (its throughput samples are 5 s)."""
MIN_GAP_S = 0.5

PANELS = (("radii-box", "radii"), ("tput-box", "throughput"), ("map-box", "layers"), ("nodes-box", "nodes"),
          ("events-box", "events"), ("public-box", "public"))


class DashApp(App[None]):
    """The dashboard of one `hearth serve`, read from `source` (live or fixed)."""

    CSS_PATH = "dash.tcss"
    TITLE = "hearth dash"
    BINDINGS: ClassVar[list[BindingType]] = [*commands.BINDINGS, Binding("q", "quit", "quit", show=False)]
    COMMANDS = App.COMMANDS | {commands.DashCommands}

    def __init__(self, source: DashSource, *, poll_s: float = POLL_S, circle_s: float = CIRCLE_EVERY_S,
                 action_context: object | None = None, nodes_s: float = READ_EVERY_S) -> None:
        super().__init__()
        self.source, self.poll_s, self.circle_s, self.nodes_s = source, poll_s, circle_s, nodes_s
        if action_context is not None:
            self.action_context = action_context
            """Where `commands`' actions reach (its ActionContext: this server's URL and key)."""
        self.status: ServeStatus | None = None
        self.problem: str | None = None
        self.circle: Circle | None = None
        self.settled = asyncio.Event()
        """Set once the first status (or its error) and the first circle are shown (tests wait on it)."""
        self._poke = asyncio.Event()
        self._soon = False
        self._started_at: float | None = None
        self._title: Content | None = None
        self._follower: Worker[None] | None = None
        self.readings: dict[str, Reading] = {}
        """What each watched node's agent said when last read (`hearth.tui.nodewatch`)."""
        self._node_poke = asyncio.Event()

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        with Horizontal(id="top"):
            with Vertical(id="radii-box", classes="panel"):
                yield RadiiPanel(id="radii")
            with Vertical(id="tput-box", classes="panel"):
                yield ThroughputPanel(id="tput")
        with Vertical(id="map-box", classes="panel"):
            yield LayerMapView(id="map")
        with Vertical(id="nodes-box", classes="panel"):
            yield NodesView(id="nodes")
        with Horizontal(id="bottom"):
            with Vertical(id="events-box", classes="panel"):
                yield EventLog(id="events")
            with Vertical(id="public-box", classes="panel"):
                yield PublicPanel(id="public")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        for box, title in PANELS:
            self.query_one(f"#{box}").border_title = title
        self.run_worker(self._poll(), name="status", group="feeds")
        self._follower = self.run_worker(self._follow(), name="events", group="feeds")
        self.run_worker(self._look(), name="circle", group="feeds")
        self.run_worker(self._watch_nodes(), name="nodes", group="feeds")

    async def on_unmount(self) -> None:
        await self.source.aclose()

    async def action_dash(self, name: str) -> None:
        """Every action of the key bindings and the palette goes through `commands.dispatch`."""
        await commands.dispatch(self, name)

    def poke(self) -> None:
        """Read the status now (after an action changed something)."""
        self._poke.set()

    # -- the loops ---------------------------------------------------------------------------
    async def _poll(self) -> None:
        while True:
            try:
                self.status, self.problem = await self.source.status(), None
                self._check_restart(self.status)
            except HearthError as exc:
                self.status, self.problem = None, exc.message
            self.show_status()
            self._maybe_settled()
            self._poke.clear()
            try:
                await asyncio.wait_for(self._poke.wait(), self.poll_s)
            except TimeoutError:
                pass
            if self._soon:  # a request came or went: read soon, but not once per request
                self._soon = False
                await asyncio.sleep(min(MIN_GAP_S, self.poll_s))

    async def _follow(self) -> None:
        log = self.query_one(EventLog)
        said: str | None = None
        while True:
            try:
                async for event in self.source.events(log.last_seq):
                    said = None
                    self.add_event(event)
            except HearthError as exc:
                if exc.message != said:
                    log.say(f"(event stream: {exc.message})")
                    said = exc.message
            await asyncio.sleep(RETRY_S)

    async def _look(self) -> None:
        while True:
            try:
                self.circle = await self.source.circle()
            except HearthError as exc:
                self.circle = Circle(problems=(exc.message,))
            self._node_poke.set()  # its nodes read now, not at the node watch's next turn
            self.show_status()
            self._maybe_settled()
            await asyncio.sleep(self.circle_s)

    async def _watch_nodes(self) -> None:
        """The nodes the status and the circle name, read every `nodes_s` (sooner after one of
        their lease events), their streams followed into the log."""
        reader = self.source.node_reader()
        if reader is None:
            return
        log = self.query_one(EventLog)
        watch = NodeWatch(reader, self.add_node_event, log.say)
        loop = asyncio.get_running_loop()
        try:
            while True:
                began = loop.time()
                watched = targets(self.status, self.circle)
                self._node_poke.clear()
                readings = await watch.read(watched)
                watch.follow(watched)
                if readings != self.readings:
                    self.readings = readings
                    self.show_status()
                try:
                    await asyncio.wait_for(self._node_poke.wait(), self.nodes_s)
                except TimeoutError:
                    pass
                # a burst of lease events: one read a second at most
                await asyncio.sleep(max(0.0, min(1.0, self.nodes_s) - (loop.time() - began)))
        finally:
            await watch.aclose()

    def _check_restart(self, status: ServeStatus) -> None:
        """A restarted server numbers its events from 1 again: follow it from its start."""
        started, before = status.started_at, self._started_at
        if started is None:
            return
        self._started_at = started
        if before is None or started == before:
            return
        log = self.query_one(EventLog)
        log.say("(the server restarted: its events from the start)")
        log.last_seq = 0
        if self._follower is not None:
            self._follower.cancel()
        self._follower = self.run_worker(self._follow(), name="events", group="feeds")

    def _maybe_settled(self) -> None:
        if self.circle is not None and (self.status is not None or self.problem is not None):
            self.settled.set()

    # -- drawing -----------------------------------------------------------------------------
    def add_event(self, event: DashEvent) -> None:
        self.query_one(EventLog).add(event)
        if event.kind in POKING:
            self.poke()
        elif event.kind in QUICK:
            self._soon = True
            self.poke()

    def add_node_event(self, node: Target, event: DashEvent) -> None:
        """A watched node's own event: a log line under its name (its numbering is its own)."""
        try:
            self.query_one(EventLog).say(f"{node.name}: {event_line(event)}")
        except NoMatches:  # the app is closing
            return
        if event.kind in POKING:
            self._node_poke.set()

    def show_status(self) -> None:
        try:
            self._show_status()
        except NoMatches:  # the app is closing and its widgets are gone: nothing to draw on
            return

    def _show_status(self) -> None:
        status = self.status
        title = self.title_line()
        if title != self._title:  # unchanged panels are not redrawn (each `show` compares too)
            self._title = title
            self.query_one("#title", Static).update(title, layout=False)  # one line, always
        self.query_one(RadiiPanel).show(RadiiFacts(status, self.problem, self.circle, self.source.now()))
        self.query_one(NodesView).show(merge(status.nodes if status else [], self.circle, self.readings))
        if status is None:
            return
        self.query_one(ThroughputPanel).show(status)
        self.query_one(LayerMapView).show(status.layer_map)
        self.query_one(PublicPanel).show(status.public)

    def title_line(self) -> Content:
        status = self.status
        if status is None:
            return Content.assemble(("hearth dash", "bold"), "  ", (self.source.label, MUTED), "  ",
                                    ("not connected", BAD))
        model = status.model or "no model"
        if status.slots is not None and (status.busy or status.active):  # a server that reports its slots
            busy = f"  {status.active}/{status.slots} slots busy" if status.active else "  busy"
        else:
            busy = f"  {int(status.busy)} busy" if status.busy else ""
        waiting = f"  {status.waiting} waiting" if status.waiting else ""
        return Content.assemble(("hearth dash", "bold"), "  ", (self.source.label, MUTED), "  ", (model, "bold"),
                                f"  radius {status.radius}{busy}{waiting}")
