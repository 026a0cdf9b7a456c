"""The server's engines with a radius and a price ceiling that change while it serves.

`hearth dash` changes them through the control routes (control_routes.py). `Steerable` has the
interface of the escalating pool (it is one, for every caller that asks) but escalates only while
its radius is public: machine, household and trusted run on the engine pool alone, as a server
started without `--radius public` does. Widening to public checks what `hearth serve --radius
public` checks: a coordinator (HEARTH_COORDINATOR) and the person's consent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from hearth.engine.supervisor import EngineProcess
from hearth.errors import InvalidRequest
from hearth.escalation.consent import Consent, remember
from hearth.escalation.pool import Engines, Escalating, Event, coordinator_of
from hearth.radius import Radius, parse_radius
from hearth.settings import Settings

log = logging.getLogger("hearth.control")
ORDER = (Radius.MACHINE, Radius.HOUSEHOLD, Radius.TRUSTED, Radius.PUBLIC)


class Steerable(Escalating):
    """See the module's docstring. Built from what the CLI made: an EnginePool, or an Escalating
    (whose consent, requester and note it keeps)."""

    def __init__(self, engines: Engines, settings: Settings) -> None:
        if isinstance(engines, Escalating):
            self.__dict__.update(engines.__dict__)  # its pool, consent, requester, note and counters
            self.public = True
        else:
            self.pool, self.settings, self.consent = engines, settings, None
            self.coordinator = ""
            self._requester = self._default_requester
            self.note = log.info
            self.clock: Callable[[], float] = time.monotonic
            self.circle_failed = {}
            self.last_cost = None
            self.public_requests = 0
            self.public = False
        self.settings = settings
        self.background: set[asyncio.Task[None]] = set()
        """Work the control routes started (a load): cancelled when the server stops."""
        self.on_close: list[Callable[[], None]] = []

    @property
    def radius(self) -> Radius:
        return Radius.PUBLIC if self.public else self.pool.policy.radius

    async def set_radius(self, wanted: str, *, consent: bool = False) -> Radius:
        """Change how far requests may reach from the next one on. Narrowing away from nodes the
        loaded model is split over unloads it (the next request loads it again within the new
        radius); widening to public needs a coordinator and consent (`consent`: the person just
        agreed, remembered as `hearth run` remembers it)."""
        radius = parse_radius(wanted, "radius")
        if radius is Radius.PUBLIC:
            self._go_public(consent)
            self.settings.radius = radius.value
            return radius
        pool = self.pool
        if radius is Radius.MACHINE and pool.policy.force:
            raise InvalidRequest("This server was started with --pool, which contradicts radius 'machine'; "
                                 "choose 'household' or 'trusted', or restart it without --pool.", param="radius")
        narrower = ORDER.index(radius) < ORDER.index(pool.policy.radius)
        self.public = False
        pool.set_radius(radius)
        self.settings.radius = radius.value
        if narrower:
            await pool.release_split()
        return radius

    def _go_public(self, agreed: bool) -> None:
        coordinator = coordinator_of(self.settings)  # NoCoordinatorSet (400) says to set HEARTH_COORDINATOR
        consent = Consent(self.settings.home, coordinator, given=self.settings.public_ok)
        if agreed and not consent.settled:
            remember(self.settings.home, coordinator)
        consent.check()  # PublicNotConsented (403) says how to agree
        if self.pool.policy.radius is not Radius.TRUSTED:
            self.pool.set_radius(Radius.TRUSTED)  # as `serve --radius public`
        self.coordinator, self.consent, self.public = coordinator, consent, True

    def set_max_price(self, ceiling: int | None) -> None:
        """The most a public request may cost, in credits per million tokens (None: no ceiling);
        read by each new public request."""
        self.settings.max_price = ceiling

    # -- the pool's interface: escalate only while public --------------------------------------
    async def load(self, model: str, on_progress: Callable[[float], None] | None = None) -> EngineProcess | None:
        if self.public:
            return await super().load(model, on_progress)
        return await self.pool.load(model, on_progress)

    def agree(self) -> None:
        if self.public:
            super().agree()

    async def run(self, model: str, op: str, *, client: str | None = None,
                  **fields: Any) -> AsyncGenerator[Event, None]:
        if self.public:
            async for event in super().run(model, op, client=client, **fields):
                yield event
            return
        async for own in self.pool.run(model, op, client=client, **fields):
            yield own

    def status(self) -> dict[str, Any]:
        return super().status() if self.public else self.pool.status()

    async def close(self) -> None:
        for hook in self.on_close:
            hook()
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await super().close()


def steerable(engines: Engines, settings: Settings) -> Steerable:
    """The server's engines, steerable (the same object when they already are)."""
    return engines if isinstance(engines, Steerable) else Steerable(engines, settings)

