"""The public radius as `hearth serve`'s status shows it: read in the background, never waited on.

Two readings, each at most every EVERY_S and only while someone reads the status (a dashboard
polls every second; the coordinator must not see one call per poll):

- the coordinator (while the server may reach the public radius): this server's own account,
  signed as its identity (`GET /v1/credits`: balance, held), and the swarm's counts, unsigned
  (`GET /v1/swarm`: live workers, queued jobs);
- this machine's `hearth contribute`, when one runs: its page's JSON twin on 127.0.0.1
  (`/served.json`: jobs finished, credits earned).

`PublicWatch.figures` answers at once with the last figures and starts a reading when the last
one is old; each reading is bounded (TIMEOUT_S, answer size). A coordinator down, refusing or
answering nonsense leaves `connected` False with the last known figures and their `checked_at`,
and a short `problem`; a page that does not answer (or answers nonsense) is "not contributing".
The parsers (`swarm_counts`, `served_counts`) are pure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hearth.errors import HearthError, LinkFailed
from hearth.identity import NodeIdentity
from hearth.net.http_client import BoundedHttpClient
from hearth.node_api.status import PublicView
from hearth.public_swarm.coordinator.client import CoordinatorClient, CoordinatorRefused, CoordinatorUnreachable
from hearth.public_swarm.coordinator.wire import SWARM
from hearth.public_swarm.worker_page import JSON as SERVED_PATH
from hearth.public_swarm.worker_page import LOOPBACK

log = logging.getLogger("hearth.http")
EVERY_S = 10.0
"""Longest the status shows figures before asking again (while it is read)."""
TIMEOUT_S = 3.0
"""Longest one reading may take, connection and answer included."""
MAX_SWARM = 512 * 1024
MAX_SERVED = 64 * 1024
MAX_COUNT = 10**12
MAX_CREDITS = 10**18


class FiguresUnreadable(LinkFailed):
    """The coordinator's swarm counts or the local worker page answered something else, too much, or
    nothing: the status shows them as not known."""

    http_status = 502
    code = "figures_unreadable"


# -- pure: what the answers mean ----------------------------------------------------------------
class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class _Swarm(_Loose):
    live_workers: int = Field(ge=0, le=MAX_COUNT, strict=True)
    jobs: dict[str, int] = Field(max_length=16)


class _Jobs(_Loose):
    finished: int = Field(ge=0, le=MAX_COUNT, strict=True)


class _Credits(_Loose):
    earned_recent: int | None = Field(default=None, ge=0, le=MAX_CREDITS, strict=True)


class _Served(_Loose):
    jobs: _Jobs
    credits: _Credits


def swarm_counts(body: bytes) -> tuple[int, int]:
    """(live workers, queued jobs) of a coordinator's `GET /v1/swarm`, or FiguresUnreadable."""
    try:
        swarm = _Swarm.model_validate_json(body)
    except ValidationError:
        raise FiguresUnreadable("The coordinator's swarm counts are malformed.") from None
    queued = swarm.jobs.get("queued", 0)
    if type(queued) is not int or not 0 <= queued <= MAX_COUNT:
        raise FiguresUnreadable("The coordinator's queued count is malformed.")
    return swarm.live_workers, queued


def served_counts(body: bytes) -> tuple[int, int]:
    """(jobs finished, micro-credits earned recently) of a worker page's `/served.json`."""
    try:
        served = _Served.model_validate_json(body)
    except ValidationError:
        raise FiguresUnreadable("The worker page's counts are malformed.") from None
    return served.jobs.finished, served.credits.earned_recent or 0


def problem_of(exc: BaseException) -> str:
    """A short reason for the status, without the URL or the answer's text."""
    if isinstance(exc, TimeoutError):
        return "the coordinator did not answer in time"
    if isinstance(exc, CoordinatorUnreachable):
        return "the coordinator is unreachable"
    if isinstance(exc, CoordinatorRefused) or not isinstance(exc, LinkFailed):
        said = str(getattr(exc, "remote_code", None) or getattr(exc, "code", None) or "error")
        code = "".join(c for c in said[:40] if c.isascii() and (c.isalnum() or c == "_")) or "error"
        return f"the coordinator refused ({code})"  # its code only: the coordinator's words are its own
    return "the coordinator answered something else"


@dataclass(frozen=True)
class Figures:
    """The last reading (see PublicView for each field)."""

    connected: bool = False
    balance: int | None = None
    held: int | None = None
    swarm_workers: int | None = None
    swarm_queued: int | None = None
    checked_at: float | None = None
    problem: str | None = None
    contributing: bool = False
    jobs_served: int = 0
    earned: int = 0

    def fill(self, view: PublicView) -> None:
        """Copy the figures into a status's PublicView."""
        for name in self.__dataclass_fields__:
            setattr(view, name, getattr(self, name))


# -- the readings ---------------------------------------------------------------------------------
class _Page(BoundedHttpClient):
    max_answer = MAX_SERVED

    def transport_error(self, exc: httpx.RequestError, timeout: float) -> HearthError:
        return FiguresUnreadable("No worker page answered.")

    def too_large(self, size: int, limit: int) -> HearthError:
        return FiguresUnreadable(f"The worker page's answer runs past {limit} bytes.")


class PublicWatch:
    """The figures of one server (see the module's docstring): `identity` signs the coordinator's
    credits; `page_port` 0 never looks for a worker page. `transport` replaces the network in tests.
    Call `close` when the server stops."""

    def __init__(self, identity: NodeIdentity, page_port: int, *, every_s: float = EVERY_S,
                 timeout_s: float = TIMEOUT_S, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.identity, self.page_port = identity, page_port
        self.every_s, self.timeout_s, self.clock, self.wall = every_s, timeout_s, clock, wall
        self.transport = transport
        self.now = Figures()
        self._coordinator: str | None = None
        self._asked = float("-inf")
        self._task: asyncio.Task[None] | None = None

    def figures(self, coordinator: str | None) -> Figures:
        """The last figures, at once; a reading starts in the background when they are EVERY_S old
        (or the coordinator changed). `coordinator` None: the server may not reach the public
        radius now, so only the worker page is read. Call it from the event loop."""
        if coordinator != self._coordinator:
            self._coordinator, self._asked = coordinator, float("-inf")
            self.now = replace(Figures(), contributing=self.now.contributing, jobs_served=self.now.jobs_served,
                               earned=self.now.earned)
        running = self._task is not None and not self._task.done()
        if not running and self.clock() - self._asked >= self.every_s:
            self._asked = self.clock()
            self._task = asyncio.get_running_loop().create_task(self._read(coordinator))
            self._task.add_done_callback(_said)
        return self.now

    def close(self) -> None:
        """Stop a reading under way (the server stops)."""
        if self._task is not None:
            self._task.cancel()

    async def _read(self, coordinator: str | None) -> None:
        jobs = [self._page()] + ([self._coordinator_figures(coordinator)] if coordinator else [])
        results = await asyncio.gather(*jobs)
        if coordinator != self._coordinator:  # changed while reading: the next status reads again
            return
        now = results[0] if len(results) == 1 else replace(results[1], contributing=results[0].contributing,
                                                         jobs_served=results[0].jobs_served,
                                                         earned=results[0].earned)
        self.now = now

    async def _page(self) -> Figures:
        if not self.page_port:
            return replace(self.now, contributing=False, jobs_served=0, earned=0)
        url = f"http://{LOOPBACK}:{self.page_port}{SERVED_PATH}"
        try:
            async with _Page(timeout=self.timeout_s, transport=self.transport) as page:
                response, body = await asyncio.wait_for(page.exchange("GET", url), self.timeout_s)
                if response.status_code != 200:
                    raise FiguresUnreadable(f"The worker page answered HTTP {response.status_code}.")
                served, earned = served_counts(body)
        except (HearthError, TimeoutError) as exc:
            log.debug("public figures: no worker page at %s: %s", url, exc)
            return replace(self.now, contributing=False, jobs_served=0, earned=0)
        return replace(self.now, contributing=True, jobs_served=served, earned=earned)

    async def _coordinator_figures(self, coordinator: str) -> Figures:
        try:
            async with CoordinatorClient(coordinator, self.identity, timeout=self.timeout_s,
                                         transport=self.transport) as client:
                credits, swarm = await asyncio.wait_for(
                    asyncio.gather(client.credits(), self._swarm(coordinator)), self.timeout_s)
        except (HearthError, TimeoutError) as exc:
            log.debug("public figures: the coordinator %s: %s", coordinator, exc)
            return replace(self.now, connected=False, problem=problem_of(exc))
        return replace(self.now, connected=True, balance=credits.balance, held=credits.held,
                       swarm_workers=swarm[0], swarm_queued=swarm[1], checked_at=self.wall(), problem=None)

    async def _swarm(self, coordinator: str) -> tuple[int, int]:
        async with _SwarmClient(timeout=self.timeout_s, transport=self.transport) as client:
            response, body = await client.exchange("GET", coordinator + SWARM)
        if response.status_code != 200:
            raise FiguresUnreadable(f"The coordinator's swarm counts answered HTTP {response.status_code}.")
        return swarm_counts(body)


def _said(task: asyncio.Task[None]) -> None:
    """A reading that broke in a way not foreseen is logged, not left for the loop to complain of."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("public figures: the reading failed: %r", exc)


class _SwarmClient(BoundedHttpClient):
    """Unsigned: `GET /v1/swarm` is public."""

    max_answer = MAX_SWARM

    def transport_error(self, exc: httpx.RequestError, timeout: float) -> HearthError:
        return CoordinatorUnreachable("The coordinator did not answer its swarm counts.")

    def too_large(self, size: int, limit: int) -> HearthError:
        return FiguresUnreadable(f"The coordinator's swarm counts run past {limit} bytes.")
