"""The coordinator's HTTP API (FastAPI): workers, prices, credits, operator grants.

Routes (all signed but `GET /v1/prices`, `GET /v1/models` and the health page's `GET /`, `GET /v1/swarm`
and `GET /v1/swarm/events`; see `auth`):
- the requester routes (`openai_routes`, with a dispatcher): `POST /v1/chat/completions` and
  `POST /v1/completions` (signed: the signer's credits; unsigned: the free allowance), `GET /v1/models`.
- `POST /v1/workers`: the signer registers or refreshes itself as a worker (`wire.WorkerRegistration`).
- `GET /v1/workers`: live workers and what they offer, each model with its price: those linked now
  (`linked: true`) first, then those registered over HTTP and seen within `live_within_s`.
- `/v1/workers/link` (WebSocket, no HTTP signature: SignedOnly passes every non-HTTP scope, and the
  Hello's signature of a fresh challenge proves the worker): a worker's one link (`links`).
- `GET /v1/prices`: the price formula and table (`pricing.price_table`), for anyone.
- `GET /v1/credits`: the signer's balance, open holds and newest entries.
- `POST /v1/grants`: the operator gives credits to an account, once per idempotency key.

Limits (`ratelimit`, settings in `ratelimit_rules.Limits`): every route, the worker link's upgrade
included, is first admitted by its client address's token bucket, and a signed request then by its
signer's; over either, a 429 with Retry-After. Jobs per requester and per worker are capped too.

Errors are hearth's bodies (`install_error_handlers`): a malformed body is a 400 naming the field,
the ledger's refusals keep their own status (402, 409, 422), and nothing is written on any error.
Database calls run in FastAPI's thread pool (sync routes), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, WebSocket

from hearth import __version__
from hearth.net.http_errors import install_error_handlers
from hearth.pairing.signed import Verifier
from hearth.public_swarm.coordinator import wire
from hearth.public_swarm.coordinator.allowance import Allowance
from hearth.public_swarm.coordinator.allowance_rules import AllowanceInputInvalid, FreeAllowanceUsed
from hearth.public_swarm.coordinator.auth import SignedOnly, any_identity, check_operator, signer_of
from hearth.public_swarm.coordinator.dispatch import Dispatcher
from hearth.public_swarm.coordinator.health import install_health
from hearth.public_swarm.coordinator.job_routes import install_job_routes
from hearth.public_swarm.coordinator.links import LiveLinks
from hearth.public_swarm.coordinator.nonces import DbNonces
from hearth.public_swarm.coordinator.openai_routes import install_openai_routes
from hearth.public_swarm.coordinator.ratelimit import PerAddress, PerIdentity, cap_worker_jobs
from hearth.public_swarm.coordinator.ratelimit_rules import WELCOMES_PER_ADDRESS, Limits
from hearth.public_swarm.coordinator.receipt_routes import install_receipt_routes
from hearth.public_swarm.coordinator.trust import Trust
from hearth.public_swarm.coordinator.trust_rules import WorkerUnknown
from hearth.public_swarm.coordinator.wire import (
    Credits,
    Granted,
    GrantRequest,
    HoldView,
    LineView,
    StandingView,
    WorkerList,
    WorkerRegistration,
    WorkerView,
)
from hearth.public_swarm.coordinator.workers import WorkerStore
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.pricing import price_table

log = logging.getLogger("hearth.coordinator")

__all__ = ["WELCOMES_PER_ADDRESS", "Welcomer", "account_view", "create_coordinator_app"]


class Welcomer:
    """Gives each identity its welcome grant on its first signed request, at most
    `per_address.tokens_per_day` new identities per client address (IPv6: its /64) per UTC day
    (`Limits.welcomes_per_address`): without a bound, a script making a fresh key per request would
    mint credits at will. Loopback is not counted: an address on the coordinator's own machine is
    its operator's (and tests'). The ledger makes the grant once per identity (its key is the
    identity's); the memo only saves asking it again, and forgets the oldest past `kept` identities
    so a stream of new keys cannot grow it without bound. An identity refused its welcome still
    works, with what it earns by contributing."""

    def __init__(self, ledger: Ledger, per_address: Allowance | None = None, kept: int = 100_000) -> None:
        self.ledger = ledger
        self.per_address = per_address
        self.kept = kept
        self.welcomed: dict[str, None] = {}

    async def __call__(self, account: str, address: str = "") -> None:
        if account not in self.welcomed:
            await asyncio.to_thread(self._welcome, account, address)
            self.welcomed[account] = None
            while len(self.welcomed) > self.kept:
                del self.welcomed[next(iter(self.welcomed))]

    def _welcome(self, account: str, address: str) -> None:
        if self.per_address is not None and not _loopback(address) and not self.ledger.was_welcomed(account):
            try:
                self.per_address.take(address, 1)
            except (FreeAllowanceUsed, AllowanceInputInvalid) as exc:
                log.info("no welcome grant for %s from %s: %s", account, address, exc.message)
                return
        self.ledger.welcome(account)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def create_coordinator_app(ledger: Ledger, registry: WorkerStore, operator: str,
                           links: LiveLinks | None = None, dispatcher: Dispatcher | None = None,
                           limits: Limits | None = None) -> FastAPI:
    """The app over `ledger`, `registry` and the live `links`; `operator` is the node id allowed to
    grant credits. With a `dispatcher` (over the same links), the requester routes are served and
    the dispatcher runs while the app does. `limits`: the defaults of `Limits` unless given."""
    app_links = links if links is not None else LiveLinks()
    limits = limits if limits is not None else Limits()
    if dispatcher is not None:
        dispatcher.jobs_per_requester = limits.jobs_per_requester

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if dispatcher is not None:
            await dispatcher.start()
            cap_worker_jobs(app_links, limits.jobs_per_worker)
        try:
            yield
        finally:
            if dispatcher is not None:
                await dispatcher.stop()
                dispatcher.events.feed.close()  # event streams end, rather than hold the shutdown

    app = FastAPI(title="hearth coordinator", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)
    nonces = DbNonces(ledger.engine)  # shared by every coordinator on the database: no cross-process replay
    welcomes = Allowance(ledger.engine, tokens_per_day=limits.welcomes_per_address, scope="welcome")
    app.add_middleware(SignedOnly, verifier=Verifier(any_identity, nonces=nonces), unsigned=wire.UNSIGNED,
                       first_seen=Welcomer(ledger, welcomes),
                       optional=wire.signature_optional if dispatcher is not None else lambda path: False,
                       limit_identity=PerIdentity(limits.per_identity, limits.max_keys).check)
    app.add_middleware(PerAddress, rate=limits.per_address, max_keys=limits.max_keys)  # the outermost: first
    install_error_handlers(app)
    if dispatcher is not None:
        install_openai_routes(app, dispatcher)
    signer = Depends(signer_of)

    @app.post(wire.WORKERS)
    def register(body: WorkerRegistration, node_id: str = signer) -> WorkerView:
        return registry.register(node_id, body)

    @app.get(wire.WORKERS)
    def live_workers(node_id: str = signer) -> WorkerList:
        views = app_links.views()
        registered = registry.known([w.node_id for w in views])
        linked = [w.model_copy(update={"name": r.name, "hardware": r.hardware})
                  if (r := registered.get(w.node_id)) is not None else w for w in views]
        shown = {w.node_id for w in linked}
        return WorkerList(live_within_s=registry.live_s,
                          data=[*linked, *(w for w in registry.live() if w.node_id not in shown)])

    @app.websocket(wire.WORKER_LINK)
    async def worker_link(websocket: WebSocket) -> None:
        await app_links.serve(websocket)

    @app.get(wire.PRICES)
    def prices() -> dict[str, Any]:
        return price_table()

    @app.get(wire.CREDITS)
    def credits(node_id: str = signer) -> Credits:
        return account_view(ledger, node_id)

    @app.get(wire.STANDING)
    def standing(node_id: str = signer) -> StandingView:
        """The signer's own standing as a worker (WorkerUnknown, 404, if it never linked here)."""
        trust = dispatcher.trust if dispatcher is not None else None
        if trust is None:
            return StandingView(spot_checks=False)
        if not isinstance(trust, Trust):  # a stand-in TrustBook (tests) keeps no summary
            raise WorkerUnknown("This coordinator's trust book reports no standing.")
        s = trust.summary(node_id)
        return StandingView(spot_checks=True, **{k: s[k] for k in StandingView.model_fields if k != "spot_checks"})

    @app.post(wire.GRANTS)
    def grant(body: GrantRequest, node_id: str = signer) -> Granted:
        check_operator(node_id, operator)
        entry = ledger.grant(body.account, body.amount, wire.grant_key(body.key))
        return Granted(account=entry.credit, amount=entry.amount, key=body.key, balance=ledger.balance(body.account))

    if dispatcher is not None:  # the jobs API and the health page (job_routes, health)
        install_job_routes(app, dispatcher)
        install_health(app, app_links, dispatcher.queue, dispatcher.stats, dispatcher.events.feed)
        install_receipt_routes(app, dispatcher)  # GET /v1/receipts (issue 11, C9)
    app.state.links = app_links
    app.state.dispatcher = dispatcher
    return app


def account_view(ledger: Ledger, account: str) -> Credits:
    holds = ledger.holds_of(account)
    lines = ledger.statement(account, wire.STATEMENT_LINES)
    return Credits(
        account=account, balance=ledger.balance(account), held=sum(h.amount for h in holds),
        holds=[HoldView(id=h.id, amount=h.amount, expires_at=h.expires_at) for h in holds],
        entries=[LineView(id=line.id, at=line.at, kind=line.kind.value, amount=line.amount,
                          counterparty=line.counterparty, hold_id=line.hold_id) for line in lines])
