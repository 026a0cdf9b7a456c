"""`hearth coordinator`: open the database, check the books, serve the coordinator's API.

The database is the ledger's (SQLite by default, `sqlite:///<HEARTH_HOME>/coordinator.db`;
PostgreSQL for several coordinators); both Alembic chains are brought to head at start. The
operator is the node identity in this HEARTH_HOME: `hearth credits grant` run with the same home
signs as it. Served by hearth's guarded uvicorn on one address, never the wildcard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from hearth.errors import HearthError, InvalidRequest
from hearth.identity import NodeIdentity
from hearth.net.bind import check_bind
from hearth.net.endpoint import join_host_port
from hearth.net.pump import listening_socket
from hearth.net.webserve import loop_factory, stop_cleanly_on_sigterm, web_server
from hearth.public_swarm import verify
from hearth.public_swarm.coordinator import workers
from hearth.public_swarm.coordinator.wire import parse_credits
from hearth.public_swarm.ledger import rules
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.engine import backend_of
from hearth.settings import Settings

if TYPE_CHECKING:
    from hearth.public_swarm.coordinator.dispatch import FreeAllowance
    from hearth.public_swarm.coordinator.ratelimit_rules import Limits

log = logging.getLogger("hearth.coordinator")


HEARTBEAT_ENV = "HEARTH_LINK_HEARTBEAT_S"
"""Seconds between worker-link heartbeats (default links.HEARTBEAT_S); a dead worker's jobs move
after three silent ones. Tests set it short."""


def heartbeat_from_env() -> float:
    from hearth.public_swarm.coordinator.links import HEARTBEAT_S

    text = os.environ.get(HEARTBEAT_ENV, "").strip()
    if not text:
        return HEARTBEAT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 300:
        raise HearthError(f"{HEARTBEAT_ENV} must be seconds from 0.05 to 300; got {text[:20]!r}.")
    return value


CHECKS_ENV = "HEARTH_SPOT_CHECKS"
"""'off' runs the coordinator without trust (no spot-checks, escrow, reputation or quarantine): for a
swarm of machines one trusts, and for the tests of other things, whose books it keeps simple."""


def checks_from_env() -> bool:
    text = os.environ.get(CHECKS_ENV, "").strip().lower()
    if text not in ("", "on", "off", "1", "0"):
        raise InvalidRequest(f"{CHECKS_ENV} must be on or off; got {text[:20]!r}.", param=CHECKS_ENV)
    return text not in ("off", "0")


def default_db(settings: Settings) -> str:
    return f"sqlite:///{settings.home / 'coordinator.db'}"


def open_books(url: str, welcome: int, say: Callable[[str], None]) -> tuple[Ledger, workers.WorkerStore]:
    """The ledger and the worker registry at `url`, migrated; audit problems are said, not hidden."""
    from hearth.public_swarm.coordinator.books import Books
    from hearth.public_swarm.coordinator.jobs import JobQueue

    ledger = Ledger.open(url, welcome=welcome)
    try:
        workers.upgrade(ledger.engine)
        for problem in ledger.audit():
            say(f"ledger audit: {problem}")
        # books left open by a coordinator that died are closed before any hold expires (`books`)
        swept = Books(ledger, JobQueue(ledger.engine)).sweep()
        if swept.settled or swept.dropped:
            say(f"settled {len(swept.settled)} finished job(s) a stopped coordinator left open; "
                f"dropped {len(swept.dropped)} job(s) whose hold was gone")
        if swept.expired:
            say(f"returned {swept.expired} expired hold(s) to their requesters")
    except BaseException:
        ledger.close()
        raise
    return ledger, workers.WorkerStore(ledger.engine)


async def run_coordinator(settings: Settings, address: str, port: int, ledger: Ledger,
                          registry: workers.WorkerStore, operator: NodeIdentity,
                          ready: asyncio.Event | None = None, allowance: FreeAllowance | None = None, *,
                          limits: Limits | None = None,
                          references: Collection[str] = (), checks: bool | None = None,
                          random: Callable[[], float] | None = None) -> None:
    """Serve until cancelled or stopped; unsigned requests use `allowance` (none: they are refused).
    `references`: the operator's trusted workers; `checks` (default: HEARTH_SPOT_CHECKS, on): trust,
    spot-checks and canaries (`verifier`; `random` draws which jobs are checked, tests fix it);
    `limits`: the rate and job limits (default `Limits()`)."""
    from hearth.node_api.feed import Feed
    from hearth.public_swarm.coordinator.app import create_coordinator_app
    from hearth.public_swarm.coordinator.dispatch import Dispatcher
    from hearth.public_swarm.coordinator.events import SwarmEvents
    from hearth.public_swarm.coordinator.jobs import JobQueue
    from hearth.public_swarm.coordinator.links import MAX_LINK_FRAME_BYTES, LiveLinks
    from hearth.public_swarm.coordinator.stats import SwarmStats
    from hearth.public_swarm.coordinator.trust import Trust
    from hearth.public_swarm.coordinator.verifier import Verifier

    links = LiveLinks(heartbeat_s=heartbeat_from_env())
    on = checks_from_env() if checks is None else checks
    trust = Trust(ledger.engine, ledger, references=references) if on else None
    queue = JobQueue(ledger.engine)
    verifier = None if trust is None or random is None else Verifier(queue, ledger, trust, random=random)
    events = SwarmEvents(Feed())  # this process's event stream (GET /v1/swarm/events)
    dispatcher = Dispatcher(ledger, queue, links, stats=SwarmStats(), allowance=allowance, trust=trust,
                            verifier=verifier, events=events)
    app = create_coordinator_app(ledger, registry, operator.node_id, links, dispatcher, limits=limits)
    server = web_server(app, settings, address, ws="websockets-sansio", ws_max_size=MAX_LINK_FRAME_BYTES,
                        ws_per_message_deflate=False, ws_ping_interval=None)
    try:
        sock = listening_socket(address, port)
    except OSError as exc:
        raise HearthError(f"Cannot listen on {join_host_port(address, port)}: {exc.strerror or exc}. Is another "
                          "`hearth coordinator` running? Stop it or choose another --port.") from exc
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if ready is not None and not serving.done():
        ready.set()
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:  # stop as on SIGTERM: links closed, running jobs given back
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(serving, 20)
        raise


def serve_coordinator(settings: Settings, bind: str, port: int, db: str | None, welcome: str | None,
                      say: Callable[[str], None], *, references: Collection[str] = (),
                      limits: Limits | None = None) -> None:
    """`hearth coordinator`: check what it was given, then serve until SIGINT or SIGTERM."""
    from hearth.public_swarm.coordinator.allowance import Allowance
    from hearth.public_swarm.coordinator.ratelimit_rules import Limits
    from hearth.public_swarm.coordinator.trust_rules import check_node_id

    limits = limits if limits is not None else Limits()
    address = check_bind(bind)
    references = [check_node_id(r, "--reference") for r in references]
    checks = checks_from_env()
    url = db or default_db(settings)
    backend_of(url)
    grant = parse_credits(welcome, "--welcome") if welcome is not None else rules.WELCOME_GRANT
    operator = NodeIdentity.load_or_create(settings.home)
    ledger, registry = open_books(url, grant, say)
    try:
        shown = url if url.startswith("sqlite") else url.split("@")[-1]  # never print a password
        say(f"hearth coordinator on {join_host_port(address, port)}, operator {operator.node_id}, "
            f"welcome {rules.format_credits(grant)} credits, database {shown}")
        say(f"limits: {describe(limits)}")
        say(f"spot-checks: on (a new worker's jobs checked at {verify.NEW_RATE:.0%}, its pay in escrow until "
            f"verified), reference workers: {', '.join(references) or 'none'}" if checks else
            f"spot-checks: off ({CHECKS_ENV}=off): no checks, escrow or quarantine")
        free = (Allowance(ledger.engine, tokens_per_day=limits.free_tokens_per_day)
                if limits.free_tokens_per_day > 0 else None)  # 0: unsigned requests are refused (sign them)
        stop_cleanly_on_sigterm("hearth coordinator")
        with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run_coordinator(settings, address, port, ledger, registry, operator,
                                       allowance=free, limits=limits, references=references))
    finally:
        ledger.close()


def describe(limits: Limits) -> str:
    """The limits in one line, for the operator's log."""
    a, i = limits.per_address, limits.per_identity
    return (f"{a.per_s:g}/s (burst {a.burst}) per address, {i.per_s:g}/s (burst {i.burst}) per identity, "
            f"{limits.jobs_per_requester} jobs per requester, {limits.jobs_per_worker} per worker, "
            f"{limits.free_tokens_per_day} free tokens and {limits.welcomes_per_address} welcomes per address a day")
