"""The coordinator's limits, with no I/O (issue 11): token buckets, the table that keeps them, and
the limits as settings.

A token bucket admits `burst` requests at once and `per_s` a second after that: each request takes
one token, tokens come back at `per_s` up to `burst`, and a refused request is told how long until
one is back (`Retry-After`, whole seconds). `Buckets` keeps one bucket per key (a client address, an
identity) and at most `max_keys` of them, dropping the least recently used: a flood of new keys
cannot grow memory, and a dropped key only comes back with a full bucket, which costs an attacker
`max_keys` admitted requests from other keys to arrange (each bounded by its own bucket).

Client addresses are keyed as the free allowance keys them (`allowance_rules.client_key`: IPv4 by
address, IPv6 by its /64), so rotating through one's /64 does not multiply one's rate.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from hearth.errors import InvalidRequest, OutOfCapacity
from hearth.public_swarm.coordinator.allowance_rules import TOKENS_PER_DAY, AllowanceInputInvalid, client_key

MAX_RATE = 1_000_000.0
MAX_KEYS = 100_000
"""Buckets kept per table by default (about 20 MB at most)."""
JOBS_PER_REQUESTER = 8
"""Jobs queued or running at once per account (or free-tier address) by default."""
WELCOMES_PER_ADDRESS = 3
"""New identities one client address (IPv6: its /64) may have welcomed per UTC day by default."""


class LimitsInvalid(InvalidRequest):
    """A limit setting out of range (`hearth coordinator` options): the message names it."""

    code = "invalid_limit"


class RateLimited(OutOfCapacity):
    """Too many requests from this address or identity: wait `Retry-After` seconds."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooManyJobs(OutOfCapacity):
    """This requester has as many jobs queued or running as the coordinator allows: wait for one
    to end (or cancel one), then submit again."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "too_many_jobs"


@dataclass(frozen=True)
class Rate:
    """A token bucket's shape: `per_s` tokens a second, at most `burst` at once."""

    per_s: float
    burst: int

    def __post_init__(self) -> None:
        if isinstance(self.per_s, bool) or not isinstance(self.per_s, int | float) or not (
                0 < self.per_s <= MAX_RATE):
            raise LimitsInvalid(f"A rate must be above 0 and at most {MAX_RATE:g} a second; got {self.per_s!r:.40}.")
        if type(self.burst) is not int or not 1 <= self.burst <= MAX_RATE:
            raise LimitsInvalid(f"A burst must be a whole number from 1 to {MAX_RATE:g}; got {self.burst!r:.40}.")


@dataclass(frozen=True)
class Bucket:
    """`tokens` left at time `at` (seconds, any monotonic clock)."""

    tokens: float
    at: float


EPSILON = 1e-6
"""Tokens: a shortfall this small is float rounding of the refill, not a real one."""


def refill(bucket: Bucket, rate: Rate, now: float) -> Bucket:
    """The bucket at `now`: topped up for the time passed, never past `burst`. A clock that went
    back adds nothing (and the bucket keeps its later time)."""
    if now <= bucket.at:
        return bucket
    return Bucket(min(float(rate.burst), bucket.tokens + (now - bucket.at) * rate.per_s), now)


def take(bucket: Bucket | None, rate: Rate, now: float, cost: float = 1.0) -> tuple[Bucket, float]:
    """(the bucket after, seconds to wait): 0.0 when admitted (`cost` taken), else how long until
    `cost` tokens are back (nothing taken). A new key starts full. A shortfall below `EPSILON` is
    rounding (a client back exactly when told must get in), so it admits."""
    full = Bucket(float(rate.burst), now) if bucket is None else refill(bucket, rate, now)
    if full.tokens + EPSILON >= cost:
        return Bucket(max(0.0, full.tokens - cost), full.at), 0.0
    return full, (cost - full.tokens) / rate.per_s


def retry_after(wait_s: float) -> int:
    """The whole seconds a refused client should wait: at least 1, never short of `wait_s`."""
    return max(1, math.ceil(wait_s - 1e-9))


@dataclass(frozen=True)
class Decision:
    """A bucket's answer: admitted, or refused with the whole seconds until it would be."""

    admitted: bool
    retry_after: int = 0


class Buckets:
    """One `rate` bucket per key, at most `max_keys` kept (least recently used dropped). Not
    thread-safe: one event loop owns it."""

    def __init__(self, rate: Rate, max_keys: int = MAX_KEYS) -> None:
        if type(max_keys) is not int or not 1 <= max_keys <= 10 * MAX_KEYS:
            raise LimitsInvalid(f"max_keys must be 1 to {10 * MAX_KEYS}; got {max_keys!r:.40}.")
        self.rate, self.max_keys = rate, max_keys
        self._table: OrderedDict[str, Bucket] = OrderedDict()

    def admit(self, key: str, now: float, cost: float = 1.0) -> Decision:
        bucket, wait = take(self._table.get(key), self.rate, now, cost)
        self._table[key] = bucket
        self._table.move_to_end(key)
        while len(self._table) > self.max_keys:
            self._table.popitem(last=False)
        return Decision(True) if wait == 0.0 else Decision(False, retry_after(wait))

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, key: object) -> bool:
        return key in self._table


def address_key(address: str) -> str:
    """The bucket key of a client address: as the free allowance counts it (IPv6 by /64). Anything
    that is no IP address (a test client, a Unix socket) is keyed by its text, cut short."""
    try:
        return client_key(address)
    except AllowanceInputInvalid:
        return "?" + str(address)[:64]


def _count(name: str, value: int, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise LimitsInvalid(f"{name} must be a whole number from {low} to {high}; got {value!r:.40}.")


@dataclass(frozen=True)
class Limits:
    """Every limit of one coordinator (`hearth coordinator` options; README "public radius" settings).

    Defaults are what a public deployment would run with: a person's client, a worker's link and
    hearth's own polling stay far below them, a script looping on the API does not."""

    per_address: Rate = field(default_factory=lambda: Rate(20.0, 100))
    """Requests per second (and burst) from one client address (IPv6: its /64), on every route."""
    per_identity: Rate = field(default_factory=lambda: Rate(10.0, 50))
    """Requests per second (and burst) signed by one identity, counted once its signature verifies."""
    max_keys: int = MAX_KEYS
    """Addresses (and, separately, identities) whose buckets are kept."""
    jobs_per_requester: int = JOBS_PER_REQUESTER
    """Jobs queued or running at once for one account (or one free-tier address)."""
    jobs_per_worker: int = 8
    """The most jobs offered to one worker at once (its Hello's max_jobs is capped to it)."""
    free_tokens_per_day: int = TOKENS_PER_DAY
    """The free allowance of tokens per client address per UTC day (0: no free tier)."""
    welcomes_per_address: int = WELCOMES_PER_ADDRESS
    """New identities per client address per UTC day that get the welcome grant."""

    def __post_init__(self) -> None:
        _count("max_keys", self.max_keys, 1, 10 * MAX_KEYS)
        _count("jobs_per_requester", self.jobs_per_requester, 1, 10_000)
        _count("jobs_per_worker", self.jobs_per_worker, 1, 64)
        _count("free_tokens_per_day", self.free_tokens_per_day, 0, 10**9)
        _count("welcomes_per_address", self.welcomes_per_address, 0, 1_000_000)


DEFAULT_LIMITS = Limits()

GENEROUS = Limits(per_address=Rate(MAX_RATE, 1_000_000), per_identity=Rate(MAX_RATE, 1_000_000),
                  jobs_per_requester=10_000, jobs_per_worker=64)
"""Limits that never bind in practice (tests that drive thousands of requests from 127.0.0.1)."""
