"""The typed client for the coordinator's HTTP API: one method per route, one place for its errors.

Every request is signed with the caller's identity (hearth.pairing.signed); the signer is the
account the coordinator charges and the worker it registers. Whatever goes wrong becomes a
HearthError: CoordinatorUnreachable (refused, timed out, broken), CoordinatorAnswerInvalid (not
the coordinator's JSON, too large), or the refusal the coordinator's body names by its code
(Unsigned, NotOperator, the ledger's errors, InvalidRequest; CoordinatorRefused for codes this
build does not know). Used by `hearth credits` now, by workers and escalation later.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from hearth.errors import HearthError, InvalidRequest, LinkFailed, RefusedByPeer, TooLarge
from hearth.identity import NodeIdentity
from hearth.net.http_client import BoundedHttpClient
from hearth.pairing.signed import SignedAuth, Unsigned
from hearth.public_swarm.coordinator import wire
from hearth.public_swarm.coordinator.allowance_rules import AllowanceInputInvalid, FreeAllowanceUsed
from hearth.public_swarm.coordinator.auth import NotOperator
from hearth.public_swarm.coordinator.dispatch_rules import FreeTierClosed, ModelNotServed, NoWorker
from hearth.public_swarm.coordinator.job_rules import JobConflict, JobInputInvalid, JobNotFound
from hearth.public_swarm.coordinator.ratelimit_rules import RateLimited, TooManyJobs
from hearth.public_swarm.coordinator.receipts_wire import LIST_LIMIT, MAX_LIST, RECEIPTS, ReceiptList
from hearth.public_swarm.coordinator.wire import (
    Credits,
    Granted,
    GrantRequest,
    StandingView,
    WorkerList,
    WorkerRegistration,
    WorkerView,
)
from hearth.public_swarm.ledger.errors import InsufficientCredits, KeyReused, LedgerInputInvalid
from hearth.public_swarm.pricing import PriceAboveCeiling

DEFAULT_TIMEOUT = 10.0
MAX_ANSWER = 4 * 1024 * 1024
M = TypeVar("M", bound=BaseModel)
_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


class NoCoordinator(InvalidRequest):
    """No coordinator URL was given, or it is not one: pass --coordinator or set HEARTH_COORDINATOR."""

    code = "no_coordinator"


class CoordinatorUnreachable(LinkFailed):
    """The coordinator did not answer: check the URL and that it runs."""

    http_status = 503
    code = "coordinator_unreachable"


class CoordinatorAnswerInvalid(LinkFailed):
    """Something that is not a hearth coordinator (of this version) answered."""

    http_status = 502
    code = "coordinator_answer_invalid"


class CoordinatorRefused(RefusedByPeer):
    """The coordinator refused with a code this build has no class for: update hearth."""

    http_status = 502
    code = "coordinator_refused"

    def __init__(self, message: str, *, status: int, remote_code: str | None) -> None:
        super().__init__(message)
        self.status, self.remote_code = status, remote_code


REFUSALS: dict[str, type[HearthError]] = {cls.code: cls for cls in (
    Unsigned, NotOperator, InvalidRequest, TooLarge, LedgerInputInvalid, KeyReused, InsufficientCredits,
    FreeAllowanceUsed, AllowanceInputInvalid, JobNotFound, JobConflict, JobInputInvalid, ModelNotServed, NoWorker,
    FreeTierClosed, PriceAboveCeiling, TooManyJobs,
)}


class _Error(BaseModel):
    message: str
    code: str | None = None


class _ErrorBody(BaseModel):
    error: _Error


def coordinator_url(url: str | None) -> str:
    """`url` as the client's base (http(s)://HOST[:PORT], no path), or NoCoordinator."""
    if url is None or not url.strip():
        raise NoCoordinator("No coordinator given: pass --coordinator URL (http://HOST:PORT) or set "
                            "HEARTH_COORDINATOR.", param="coordinator")
    base = url.strip().rstrip("/")
    if not _URL.fullmatch(base):
        raise NoCoordinator(f"--coordinator {url[:80]!r} is not http(s)://HOST[:PORT].", param="coordinator")
    return base


def refusal(status: int, body: bytes, what: str,
            more: dict[str, type[HearthError]] | None = None, retry_after: str | None = None) -> HearthError:
    """The error for a refusal: the class its body's code names (REFUSALS, then `more`); a rate
    limit's RateLimited carries the answer's Retry-After (`retry_after`, whole seconds)."""
    try:
        error = _ErrorBody.model_validate_json(body).error
    except ValidationError:
        return CoordinatorAnswerInvalid(f"The coordinator answered {what} with HTTP {status} and no hearth error: "
                                        "is that URL a hearth coordinator?")
    if error.code == RateLimited.code:
        wait = int(retry_after) if retry_after is not None and retry_after.isdigit() else 1
        return RateLimited(error.message, retry_after=max(1, min(wait, 3600)))
    cls = REFUSALS.get(error.code or "") or (more or {}).get(error.code or "")
    if cls is not None:
        return cls(error.message)
    return CoordinatorRefused(f"The coordinator refused {what} (HTTP {status}, {error.code or 'no code'}): "
                              f"{error.message}", status=status, remote_code=error.code)


def _transport(exc: httpx.RequestError, base: str, timeout: float) -> HearthError:
    if isinstance(exc, httpx.TimeoutException):
        return CoordinatorUnreachable(f"The coordinator at {base} did not answer within {timeout:g} s.")
    if isinstance(exc, httpx.TransportError):
        return CoordinatorUnreachable(f"Could not reach the coordinator at {base} ({exc or type(exc).__name__}): "
                                      "check the URL and that `hearth coordinator` runs there.")
    return CoordinatorAnswerInvalid(f"The coordinator's answer could not be read ({exc or type(exc).__name__}).")


def _parse(model: type[M], body: bytes, what: str) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or "the body"
        raise CoordinatorAnswerInvalid(f"The coordinator's answer to {what} is malformed at {where!r}: is that "
                                       "URL a hearth coordinator of this version?") from exc


class CoordinatorClient(BoundedHttpClient):
    """Talks to one coordinator at `url`, signing as `identity`; close it (or `async with`).
    `transport` replaces the network (httpx.MockTransport or an ASGI transport in tests)."""

    max_answer = MAX_ANSWER

    def __init__(self, url: str, identity: NodeIdentity, *, timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base = coordinator_url(url)
        super().__init__(timeout=timeout, transport=transport, auth=SignedAuth(identity))

    def transport_error(self, exc: httpx.RequestError, timeout: float) -> HearthError:
        return _transport(exc, self.base, timeout)

    def too_large(self, size: int, limit: int) -> HearthError:
        return CoordinatorAnswerInvalid(f"The coordinator's answer runs past {limit} bytes.")

    async def _call(self, method: str, path: str, body: BaseModel | None = None,
                    extra: dict[str, str] | None = None) -> bytes:
        """The answer's body to `method path` (any 2xx), or the HearthError its refusal names."""
        what = f"{method} {path}"
        content = body.model_dump_json().encode() if body is not None else None
        headers = {**({"content-type": "application/json"} if body is not None else {}), **(extra or {})}
        response, answer = await self.exchange(method, self.base + path, content=content, headers=headers)
        if not 200 <= response.status_code < 300:
            raise refusal(response.status_code, answer, what, retry_after=response.headers.get("retry-after"))
        return answer

    async def register(self, registration: WorkerRegistration) -> WorkerView:
        """Register (or refresh) the signer as a worker offering `registration.models`."""
        return _parse(WorkerView, await self._call("POST", wire.WORKERS, registration), f"POST {wire.WORKERS}")

    async def workers(self) -> WorkerList:
        return _parse(WorkerList, await self._call("GET", wire.WORKERS), f"GET {wire.WORKERS}")

    async def prices(self) -> dict[str, Any]:
        """The published price table (`hearth.public_swarm.pricing.price_table`'s shape)."""
        answer = await self._call("GET", wire.PRICES)
        try:
            table = json.loads(answer)
        except ValueError as exc:
            raise CoordinatorAnswerInvalid("The coordinator's price table is not JSON.") from exc
        if not isinstance(table, dict) or not isinstance(table.get("data"), list):
            raise CoordinatorAnswerInvalid("The coordinator's price table has no 'data' list.")
        return table

    async def credits(self) -> Credits:
        """The signer's balance, open holds and newest entries (the first call welcomes it)."""
        return _parse(Credits, await self._call("GET", wire.CREDITS), f"GET {wire.CREDITS}")

    async def standing(self) -> StandingView:
        """The signer's own standing as a worker: spot-checks passed and failed, escrow (issue 11)."""
        return _parse(StandingView, await self._call("GET", wire.STANDING), f"GET {wire.STANDING}")

    async def grant(self, account: str, amount: int, key: str) -> Granted:
        """Operator only: give `amount` micro-credits to `account`; the same `key` again grants nothing."""
        try:
            request = GrantRequest(account=account, amount=amount, key=key)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "account"
            raise InvalidRequest(f"Invalid grant: {where}: {first['msg']}.", param=where or None) from None
        return _parse(Granted, await self._call("POST", wire.GRANTS, request), f"POST {wire.GRANTS}")

    async def receipts(self, limit: int = LIST_LIMIT) -> ReceiptList:
        """The signer's finished jobs with their receipts and charges, newest first (at most `limit`)."""
        if type(limit) is not int or not 1 <= limit <= MAX_LIST:
            raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_LIST}; got {limit!r:.20}.",
                                 param="limit")
        path = f"{RECEIPTS}?limit={limit}"
        return _parse(ReceiptList, await self._call("GET", path), f"GET {RECEIPTS}")
