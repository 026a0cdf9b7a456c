"""The anonymous free allowance's rules, with no I/O: whose allowance a client address draws on,
which day it is, and what a take or a give-back leaves.

An unsigned request is paid by its client address's daily allowance of tokens. IPv4 addresses
count one by one; IPv6 ones by their /64 (one host's slice: a home router hands each household a
/64 or more, so rotating through it must not multiply the allowance). An IPv4-mapped IPv6 address
counts as its IPv4 address. Days are UTC days, so every coordinator process agrees on the reset.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from hearth.errors import InvalidRequest, OutOfCapacity

DAY_S = 86_400
TOKENS_PER_DAY = 20_000
"""The default daily free allowance of one address (prompt and output tokens together)."""
MAX_TOKENS_PER_DAY = 10**9
IPV6_PREFIX = 64


class AllowanceInputInvalid(InvalidRequest):
    """A client address or a token count the allowance cannot use (a bug in the caller, or a proxy
    passing something that is no IP address)."""

    code = "invalid_allowance_input"


class FreeAllowanceUsed(OutOfCapacity):
    """This address's free tokens for today are used: wait for the reset (Retry-After), ask for
    fewer tokens, or sign requests with a hearth identity to pay with credits."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "free_allowance_used"

    def __init__(self, message: str, *, left: int | None = None, resets_at: int | None = None,
                 now: float | None = None) -> None:
        super().__init__(message, param="max_tokens")
        self.left, self.resets_at = left, resets_at
        if resets_at is not None and now is not None:
            self.retry_after = max(1, int(resets_at - now))


def client_key(address: object) -> str:
    """The allowance's key for a client address: the IPv4 address itself, or the IPv6 /64."""
    if not isinstance(address, str) or not 1 <= len(address) <= 100:
        raise AllowanceInputInvalid(f"client address must be an IP address; got {address!r:.60}", param="address")
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise AllowanceInputInvalid(f"client address must be an IP address; got {address!r:.60}",
                                    param="address") from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def day_of(t: float) -> int:
    """The UTC day number of epoch time `t`."""
    return int(t // DAY_S)


def resets_at(day: int) -> int:
    """When `day`'s allowance ends: the next UTC midnight, in epoch seconds."""
    return (day + 1) * DAY_S


def check_tokens(tokens: object) -> int:
    if type(tokens) is not int or not 1 <= tokens <= MAX_TOKENS_PER_DAY:
        raise AllowanceInputInvalid(f"tokens must be an integer 1 to {MAX_TOKENS_PER_DAY}; got {tokens!r:.40}",
                                    param="tokens")
    return tokens


def check_per_day(tokens_per_day: object) -> int:
    if type(tokens_per_day) is not int or not 0 <= tokens_per_day <= MAX_TOKENS_PER_DAY:
        raise AllowanceInputInvalid(f"tokens_per_day must be 0 to {MAX_TOKENS_PER_DAY}; got {tokens_per_day!r:.40}",
                                    param="tokens_per_day")
    return tokens_per_day


@dataclass(frozen=True)
class Usage:
    """An address's row: tokens `used` on UTC `day`."""

    day: int
    used: int

    def on(self, today: int) -> int:
        """Tokens used today: a row from an earlier day counts nothing."""
        return self.used if self.day == today else 0


def plan_take(usage: Usage | None, tokens: int, today: int, per_day: int, now: float) -> Usage:
    """The usage after taking `tokens` today, or FreeAllowanceUsed saying what is left and when
    it resets (nothing is taken on a refusal)."""
    check_tokens(tokens)
    used = usage.on(today) if usage is not None else 0
    left = max(0, per_day - used)
    if tokens > left:
        reset = resets_at(today)
        raise FreeAllowanceUsed(
            f"This address's free allowance is {per_day} tokens a day; {left} are left and this request may "
            f"use {tokens} (its prompt and max_tokens). It resets in {_span(reset - now)} (at {reset}, UTC "
            "midnight): ask for fewer tokens, wait, or sign requests with a hearth identity to pay with credits.",
            left=left, resets_at=reset, now=now)
    return Usage(today, used + tokens)


def plan_give_back(usage: Usage | None, tokens: int, today: int) -> Usage | None:
    """The usage after returning `tokens` a job did not use; None when nothing changes. Tokens
    given back after the day they were taken return nothing (that day's allowance is gone, and a
    new day's is whole), except when today's row was already started: then today's count drops
    by at most those tokens, never below zero (a bounded leak of one job's unused part)."""
    check_tokens(tokens)
    if usage is None or usage.day != today or usage.used == 0:
        return None
    return Usage(today, max(0, usage.used - tokens))


def left_today(usage: Usage | None, today: int, per_day: int) -> int:
    return max(0, per_day - (usage.on(today) if usage is not None else 0))


def _span(seconds: float) -> str:
    s = max(0, int(seconds))
    return f"{s // 3600} h {s % 3600 // 60} min" if s >= 3600 else f"{s // 60} min {s % 60} s"
