"""`--radius public`: the engine pool first, the public swarm only when the circle cannot serve.

`Escalating` has the engine pool's interface as the server and the CLI use it (`run`, `load`,
`status`, `close`, `store`, `engine`, `placement`). A request runs on the pool (this machine, the
household, the paired peers); it goes to the coordinator only when the pool fails before its
first event with one of CIRCLE_CANNOT_SERVE:

- DoesNotFit: no placement over this machine and the nodes that answered holds the model;
- LeaseFailed: a node the plan needed did not answer or said no;
- ModelNotFound: the model is not in this machine's store at all (the swarm may serve it).

Anything else (a bad request, a crash mid-reply) is the pool's error, as without the public
radius. Before the first public request the person's consent is checked (`consent.Consent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from hearth.engine.events import Done, ReplyEvent, Token
from hearth.engine.supervisor import EngineProcess
from hearth.errors import HearthError, InvalidRequest, ModelNotFound
from hearth.escalation.consent import Consent
from hearth.identity import NodeIdentity
from hearth.models.store import ModelStore
from hearth.node_api.feed import Feed
from hearth.orchestrator.engines import EnginePool
from hearth.orchestrator.placement import LeaseFailed, Placement
from hearth.orchestrator.planner import DoesNotFit
from hearth.orchestrator.stats import Tracker, handing_over
from hearth.public_swarm.coordinator.client import coordinator_url
from hearth.public_swarm.requester import PublicRequester
from hearth.public_swarm.sse import PublicCost
from hearth.settings import Settings

CIRCLE_CANNOT_SERVE: tuple[type[HearthError], ...] = (DoesNotFit, LeaseFailed, ModelNotFound)
HANDED_OVER = frozenset(cls.code for cls in CIRCLE_CANNOT_SERVE)
"""Their codes: the pool's record of such a request is handed over to the swarm, not failed."""
REMEMBER_S = 30.0
"""How long a model the circle could not serve goes straight to the swarm (no new survey)."""
PUBLIC_OPS = ("chat", "complete")

Event = ReplyEvent | PublicCost
Note = Callable[[str], None]
Requester = Callable[[], PublicRequester]


class NoCoordinatorSet(InvalidRequest):
    """--radius public needs a coordinator: set HEARTH_COORDINATOR."""

    code = "no_coordinator"


def coordinator_of(settings: Settings) -> str:
    """The coordinator `--radius public` escalates to, checked: HEARTH_COORDINATOR."""
    if not settings.coordinator:
        raise NoCoordinatorSet("--radius public sends what the circle cannot serve to a coordinator, and none "
                               "is set: set HEARTH_COORDINATOR=http://HOST:PORT (see `hearth coordinator`).",
                               param="coordinator")
    return coordinator_url(settings.coordinator)


def public_model_name(store: ModelStore, model: str) -> str:
    """What to ask the swarm for: the exact weights (sha256:<digest>) when this machine has the
    model, so the swarm serves the same file; else the name as the swarm lists it."""
    try:
        manifest = store.get(model)
    except (InvalidRequest, OSError, ValueError):
        manifest = None
    return f"sha256:{manifest.digest}" if manifest is not None else model


class Escalating:
    """The pool, with the public swarm behind it (see the module's docstring)."""

    def __init__(self, pool: EnginePool, settings: Settings, consent: Consent | None, *,
                 requester: Requester | None = None, note: Note | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool, self.settings, self.consent = pool, settings, consent
        self.coordinator = coordinator_of(settings)
        self._requester = requester or self._default_requester
        self.note = note or (lambda _: None)
        self.clock = clock
        self.circle_failed: dict[str, tuple[float, HearthError]] = {}
        self.last_cost: PublicCost | None = None
        self.public_requests = 0

    def _default_requester(self) -> PublicRequester:
        identity = NodeIdentity.load_or_create(self.settings.home)
        return PublicRequester(self.coordinator, identity, max_price=self.settings.max_price)

    # -- the pool's interface --------------------------------------------------------------
    @property
    def store(self) -> ModelStore:
        return self.pool.store

    @property
    def engine(self) -> EngineProcess | None:
        return self.pool.engine

    @property
    def placement(self) -> Placement | None:
        return self.pool.placement

    @property
    def feed(self) -> Feed:
        return self.pool.feed

    async def load(self, model: str, on_progress: Callable[[float], None] | None = None) -> EngineProcess | None:
        """The circle's engine for `model`; None when the circle cannot serve it: requests then go
        to the swarm, after consent (`agree`, which the CLI calls at once, so that a person answers
        before typing a prompt)."""
        try:
            return await self.pool.load(model, on_progress)
        except CIRCLE_CANNOT_SERVE as exc:
            self._circle_cannot(model, exc)
            return None

    def agree(self) -> None:
        """Check consent now (asking the person if one can be asked); PublicNotConsented if not."""
        self._consent()

    async def run(self, model: str, op: str, *, client: str | None = None,
                  **fields: Any) -> AsyncGenerator[Event, None]:
        """The pool's events, or the swarm's (Start, Token..., PublicCost, Done). The pool's record
        of a request the circle cannot serve is handed over and ends as the public job does.
        `client` is who asks, for the pool's fair share of slots (the swarm does not see it)."""
        tracker: Tracker | None = None
        recent = self._recently_failed(model)
        if recent is None or op not in PUBLIC_OPS:
            events = self.pool.run(model, op, client=client, **fields)
            async with contextlib.aclosing(events):
                with handing_over(HANDED_OVER if op in PUBLIC_OPS else frozenset()) as handover:
                    try:
                        first = await anext(events)
                    except CIRCLE_CANNOT_SERVE as exc:
                        if op not in PUBLIC_OPS:
                            raise
                        self._circle_cannot(model, exc)
                        tracker, reason = handover.tracker, exc.code
                    except HearthError as exc:
                        if handover.tracker is not None:  # handed over, yet not escalated: it failed
                            handover.tracker.failed(exc.code)
                        raise
                    else:
                        yield first
                        async for event in events:
                            yield event
                        return
        else:
            reason = recent.code
        if tracker is None and isinstance(self.pool, EnginePool):  # straight to the swarm: no pool record yet
            tracker = self.pool.stats.start(model, op)
        if tracker is not None:
            tracker.escalated(reason)
        async for public in self._public(model, op, fields, tracker):
            yield public

    def status(self) -> dict[str, Any]:
        last = self.last_cost
        return self.pool.status() | {"public": {
            "coordinator": self.coordinator,
            "consented": self.consent.settled if self.consent is not None else False,
            "requests": self.public_requests,
            "last_cost_credits": last.micro_credits if last else None,
            "last_workers": list(last.workers) if last else None,
        }}

    async def close(self) -> None:
        await self.pool.close()

    # -- escalation ------------------------------------------------------------------------
    def _circle_cannot(self, model: str, exc: HearthError) -> None:
        before = self.circle_failed.get(model)
        self.circle_failed[model] = (self.clock(), exc)
        if before is None or before[1].message != exc.message:  # said once, not on every turn of a chat
            self.note(f"The circle cannot serve {model}: {exc.message}")

    def _recently_failed(self, model: str) -> HearthError | None:
        seen = self.circle_failed.get(model)
        if seen is None or self.clock() - seen[0] > REMEMBER_S:
            return None
        return seen[1]

    def _consent(self) -> None:
        if self.consent is None:
            raise InvalidRequest("The public radius needs consent, and none was configured.")
        self.consent.check()

    async def _public(self, model: str, op: str, fields: dict[str, Any],
                      tracker: Tracker | None) -> AsyncGenerator[Event, None]:
        try:
            async for event in self._ask_swarm(model, op, fields):
                if tracker is not None:
                    _track(tracker, event)
                yield event
            if tracker is not None:
                tracker.finished()
        except HearthError as exc:
            if tracker is not None:
                tracker.failed(exc.code)
            raise
        finally:
            if tracker is not None:
                tracker.cancelled()  # a no-op unless the reader left before the end

    async def _ask_swarm(self, model: str, op: str, fields: dict[str, Any]) -> AsyncGenerator[Event, None]:
        await asyncio.to_thread(self._consent)
        name = public_model_name(self.store, model)
        self.note(f"Asking the public swarm at {self.coordinator} for {name}.")
        async with self._requester() as requester:
            async for event in requester.run(name, op, **fields):
                if isinstance(event, PublicCost):
                    self.last_cost = event
                    self.public_requests += 1
                    if isinstance(self.pool, EnginePool):  # the dashboard's count of what was spent
                        tokens = event.micro_credits // event.price if event.price > 0 else 0
                        self.pool.stats.public_job(event.job_id, name, tokens, event.micro_credits)
                yield event


def _track(tracker: Tracker, event: Event) -> None:
    """The public reply's progress in the request's record (the swarm's tokens carry no ids)."""
    if isinstance(event, Token):
        tracker.token(len(event.ids))
    elif isinstance(event, Done):
        tracker.done(event)
    elif isinstance(event, PublicCost):
        tracker.stat.cost_credits = max(0, event.micro_credits)


Engines = EnginePool | Escalating
"""What the server and the CLI run requests on."""
