"""The credit ledger's rules, with no I/O: what an operation may do and which entries it makes.

Credits are an accounting unit, not money. Amounts are integers of micro-credits (`MICRO` per
credit); there are no floats anywhere in the ledger. Every movement is one `Entry` that debits
one account and credits another by the same amount, so the sum over all accounts is always zero,
and a balance is the sum of an account's entries, never a counter kept on its own.

Accounts:
- `OPERATOR` issues every credit (operator grants and welcome grants); its balance is minus the
  credits issued, the only balance that may be negative.
- a participant's account: its id (a node id, or any `ACCOUNT_ID` name the coordinator picks).
- `escrow_account(hold_id)`: one per hold. A request first moves its maximum cost from the
  requester into the hold's escrow (`plan_hold`); settling moves the served part to the worker
  and the rest back to the requester (`plan_settle`); releasing or expiring moves all of it back.
- `vesting_account(worker)`: one per worker (issue 11), where the coordinator pays a worker whose
  earnings are not yet its own (a new worker, or a trusted one for the period since its last
  passed spot-check). `plan_vest` moves the whole balance to the worker; `plan_forfeit` moves it
  to the operator (a failed check). Its id has a ':' that no participant's id may have.

The database layer (`hearth.public_swarm.ledger.db`) reads the current balance and hold, calls
these functions inside one locked transaction, and writes what they return. Later callers (the
coordinator) catch `LedgerRefused` and `InvalidRequest` and answer with their status codes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from hearth.public_swarm.ledger.errors import (
    HoldClosed,
    HoldNotFound,
    InsufficientCredits,
    LedgerInputInvalid,
)

MICRO = 1_000_000
"""Micro-credits per credit."""
MAX_AMOUNT = 10**15
"""The largest amount one operation moves (a billion credits); larger ones are refused as malformed."""
WELCOME_GRANT = 10 * MICRO
"""What a new identity receives once, to try the public swarm before contributing."""
MAX_TTL = 7 * 24 * 3600.0
"""The longest a hold may stay open before `plan_expire` returns it (seconds)."""

OPERATOR = "operator"
ESCROW_PREFIX = "escrow:"
VESTING_PREFIX = "vesting:"
ACCOUNT_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{2,63}")
"""A participant's account id: a node id (16 base32 letters) or another lower-case name."""
HOLD_ID = re.compile(r"[a-z0-9]{8,64}")
KEY = re.compile(r"[A-Za-z0-9._:-]{8,128}")
"""An idempotency key a caller chooses (a UUID, or e.g. `job-<id>-hold`). Keys the ledger makes
itself (`welcome_key`, `expire_key`) contain `~` and `/`, so no caller's key can take them."""


class Kind(StrEnum):
    """What an entry records."""

    GRANT = "grant"
    """operator -> account: credits the coordinator's operator gave."""
    WELCOME = "welcome"
    """operator -> account: the once-per-identity welcome grant."""
    HOLD = "hold"
    """requester -> escrow: a request's maximum cost, set aside."""
    SETTLE = "settle"
    """escrow -> worker: the part of a hold the worker served."""
    RELEASE = "release"
    """escrow -> requester: the part of a hold not served, or all of it when the request was dropped."""
    EXPIRE = "expire"
    """escrow -> requester: a hold nobody settled before it expired."""
    VEST = "vest"
    """vesting account -> worker: a worker's escrowed earnings, now its own."""
    FORFEIT = "forfeit"
    """vesting account -> operator: a worker's escrowed earnings, lost to a failed check."""


class HoldState(StrEnum):
    OPEN = "open"
    SETTLED = "settled"
    RELEASED = "released"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Entry:
    """One movement: `amount` micro-credits from `debit` to `credit`."""

    kind: Kind
    debit: str
    credit: str
    amount: int
    hold_id: str | None = None


@dataclass(frozen=True)
class Hold:
    """Credits a requester set aside for one request, until settled, released or expired."""

    id: str
    requester: str
    amount: int
    expires_at: float
    state: HoldState = HoldState.OPEN


@dataclass(frozen=True)
class Settlement:
    """What settling a hold did: `served` micro-credits to `worker`, `returned` to the requester."""

    hold_id: str
    worker: str
    served: int
    returned: int


def escrow_account(hold_id: str) -> str:
    return ESCROW_PREFIX + hold_id


def vesting_account(worker: str) -> str:
    """The account a worker's escrowed earnings sit in (`worker` is checked)."""
    return VESTING_PREFIX + check_account(worker, "worker")


def welcome_key(account: str) -> str:
    """The welcome grant's idempotency key: one per identity, ever."""
    return f"~welcome/{account}"


def expire_key(hold_id: str) -> str:
    return f"~expire/{hold_id}"


def check_account(account: object, what: str = "account") -> str:
    """A participant's account id, or LedgerInputInvalid (the operator and escrows are not ones)."""
    if not isinstance(account, str) or not ACCOUNT_ID.fullmatch(account) or account == OPERATOR:
        raise LedgerInputInvalid(
            f"{what} must be 3-64 characters of a-z, 0-9, '_', '.', '-' (not {OPERATOR!r}); got {account!r:.80}",
            param=what)
    return account


def check_payee(account: object, what: str = "worker") -> str:
    """An account earnings may be paid to: a participant, or a participant's vesting account."""
    if isinstance(account, str) and account.startswith(VESTING_PREFIX):
        check_account(account[len(VESTING_PREFIX):], what)
        return account
    return check_account(account, what)


def check_any_account(account: object) -> str:
    """Any account a balance or statement may be asked of: a participant, the operator, an escrow,
    a worker's vesting account."""
    if account == OPERATOR:
        return OPERATOR
    if isinstance(account, str) and account.startswith(VESTING_PREFIX):
        return check_payee(account)
    if isinstance(account, str) and account.startswith(ESCROW_PREFIX):
        check_hold_id(account[len(ESCROW_PREFIX):])
        return account
    return check_account(account)


def check_hold_id(hold_id: object) -> str:
    if not isinstance(hold_id, str) or not HOLD_ID.fullmatch(hold_id):
        raise LedgerInputInvalid(f"hold_id must be 8-64 characters of a-z, 0-9; got {hold_id!r:.80}",
                                 param="hold_id")
    return hold_id


def check_key(key: object) -> str:
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise LedgerInputInvalid(
            f"idempotency key must be 8-128 characters of A-Z, a-z, 0-9, '.', '_', ':', '-'; got {key!r:.80}",
            param="key")
    return key


def check_amount(amount: object, what: str = "amount", *, allow_zero: bool = False) -> int:
    """An integer number of micro-credits in range (bool and float are refused: no rounding)."""
    low = 0 if allow_zero else 1
    if type(amount) is not int or not low <= amount <= MAX_AMOUNT:
        raise LedgerInputInvalid(
            f"{what} must be an integer of micro-credits from {low} to {MAX_AMOUNT}; got {amount!r:.80}",
            param=what)
    return amount


def check_ttl(ttl: object) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL:
        raise LedgerInputInvalid(f"ttl must be seconds in (0, {MAX_TTL:.0f}]; got {ttl!r:.80}", param="ttl")
    return float(ttl)


def fingerprint(op: str, *args: object) -> str:
    """The canonical text of an operation's arguments, kept beside its entries so that the same
    key sent again with other arguments is told apart from a retry."""
    return "|".join([op, *(str(a) for a in args)])


def plan_grant(account: str, amount: int) -> list[Entry]:
    """The operator gives `amount` to `account` (a participant, or a worker's vesting account when
    the operator pays a free-tier job's worker that is still in escrow)."""
    return [Entry(Kind.GRANT, OPERATOR, check_payee(account, "account"), check_amount(amount))]


def plan_welcome(account: str, amount: int = WELCOME_GRANT) -> list[Entry]:
    """A new identity's welcome grant (the caller keys it with `welcome_key`, so it happens once)."""
    return [Entry(Kind.WELCOME, OPERATOR, check_account(account), check_amount(amount))]


def plan_hold(hold_id: str, requester: str, amount: int, balance: int, now: float,
              ttl: float) -> tuple[Hold, list[Entry]]:
    """Set aside `amount` of `requester`'s `balance` (read under the requester's lock) for one request."""
    check_hold_id(hold_id)
    check_account(requester, "requester")
    check_amount(amount)
    ttl = check_ttl(ttl)
    if balance < amount:
        raise InsufficientCredits(
            f"{requester} has {format_credits(balance)} credits; this request may cost up to "
            f"{format_credits(amount)}. Contribute a machine to earn credits, or ask for fewer tokens.",
            param="amount")
    hold = Hold(hold_id, requester, amount, now + ttl)
    return hold, [Entry(Kind.HOLD, requester, escrow_account(hold_id), amount, hold_id)]


def _open(hold: Hold | None, hold_id: str) -> Hold:
    if hold is None:
        raise HoldNotFound(f"No hold {hold_id!r}.", param="hold_id")
    if hold.state is not HoldState.OPEN:
        raise HoldClosed(f"Hold {hold.id!r} is already {hold.state.value}; a hold closes once.", param="hold_id")
    return hold


def plan_settle(hold: Hold | None, hold_id: str, served: int, worker: str) -> tuple[Hold, Settlement, list[Entry]]:
    """Close a hold at what was served: `served` to the worker, the rest back to the requester.
    `hold` is the current row for `hold_id` (None when there is none)."""
    check_hold_id(hold_id)
    check_amount(served, "served", allow_zero=True)
    check_payee(worker, "worker")
    hold = _open(hold, hold_id)
    if served > hold.amount:
        raise LedgerInputInvalid(
            f"served ({format_credits(served)}) is more than hold {hold.id!r} set aside "
            f"({format_credits(hold.amount)}).",
            param="served")
    escrow = escrow_account(hold.id)
    entries = []
    if served:
        entries.append(Entry(Kind.SETTLE, escrow, worker, served, hold.id))
    if hold.amount - served:
        entries.append(Entry(Kind.RELEASE, escrow, hold.requester, hold.amount - served, hold.id))
    settlement = Settlement(hold.id, worker, served, hold.amount - served)
    return replace(hold, state=HoldState.SETTLED), settlement, entries


@dataclass(frozen=True)
class SplitSettlement:
    """What settling a hold among several workers did: `paid` (worker, micro-credits) in worker
    order, `returned` to the requester."""

    hold_id: str
    paid: tuple[tuple[str, int], ...]
    returned: int

    @property
    def served(self) -> int:
        return sum(amount for _, amount in self.paid)


def plan_settle_split(hold: Hold | None, hold_id: str,
                      paid: Mapping[str, int]) -> tuple[Hold, SplitSettlement, list[Entry]]:
    """Close a hold paying each worker its part of what was served (a job that several workers
    streamed), the rest back to the requester. Never more than the hold; workers with 0 get nothing."""
    check_hold_id(hold_id)
    if not isinstance(paid, Mapping) or len(paid) > 64:
        raise LedgerInputInvalid("paid must map at most 64 workers to amounts.", param="paid")
    parts = sorted((check_payee(w, "worker"), check_amount(a, "served", allow_zero=True)) for w, a in paid.items())
    hold = _open(hold, hold_id)
    served = sum(a for _, a in parts)
    if served > hold.amount:
        raise LedgerInputInvalid(
            f"served ({format_credits(served)}) is more than hold {hold.id!r} set aside "
            f"({format_credits(hold.amount)}).", param="served")
    if {hold.requester, VESTING_PREFIX + hold.requester} & {w for w, a in parts if a}:
        raise LedgerInputInvalid("A requester is not paid from its own hold.", param="paid")
    escrow = escrow_account(hold.id)
    entries = [Entry(Kind.SETTLE, escrow, w, a, hold.id) for w, a in parts if a]
    if hold.amount - served:
        entries.append(Entry(Kind.RELEASE, escrow, hold.requester, hold.amount - served, hold.id))
    settlement = SplitSettlement(hold.id, tuple((w, a) for w, a in parts if a), hold.amount - served)
    return replace(hold, state=HoldState.SETTLED), settlement, entries


def plan_release(hold: Hold | None, hold_id: str) -> tuple[Hold, list[Entry]]:
    """Close a hold with nothing served: all of it back to the requester."""
    check_hold_id(hold_id)
    hold = _open(hold, hold_id)
    entry = Entry(Kind.RELEASE, escrow_account(hold.id), hold.requester, hold.amount, hold.id)
    return replace(hold, state=HoldState.RELEASED), [entry]


def plan_expire(holds: Iterable[Hold], now: float) -> list[tuple[Hold, list[Entry]]]:
    """Every open hold past its expiry, closed, with the entry that returns its credits."""
    out = []
    for hold in holds:
        if hold.state is HoldState.OPEN and hold.expires_at <= now:
            entry = Entry(Kind.EXPIRE, escrow_account(hold.id), hold.requester, hold.amount, hold.id)
            out.append((replace(hold, state=HoldState.EXPIRED), [entry]))
    return out


def plan_vest(worker: str, balance: int) -> list[Entry]:
    """Move a worker's whole escrow (`balance`, read under its vesting account's lock) to the worker."""
    amount = check_amount(balance, "balance", allow_zero=True)
    return [Entry(Kind.VEST, vesting_account(worker), worker, amount)] if amount else []


def plan_forfeit(worker: str, balance: int) -> list[Entry]:
    """Move a worker's whole escrow (`balance`, read under its vesting account's lock) to the operator."""
    amount = check_amount(balance, "balance", allow_zero=True)
    return [Entry(Kind.FORFEIT, vesting_account(worker), OPERATOR, amount)] if amount else []


def balances(entries: Iterable[Entry]) -> dict[str, int]:
    """Each account's balance: credits in minus debits out."""
    out: dict[str, int] = {}
    for e in entries:
        out[e.debit] = out.get(e.debit, 0) - e.amount
        out[e.credit] = out.get(e.credit, 0) + e.amount
    return out


def audit(balance: Mapping[str, int], holds: Iterable[Hold]) -> list[str]:
    """What is wrong with a ledger's state, if anything (an empty list when the books are right):
    the accounts sum to zero, no participant, escrow or vesting account is negative, and each hold's
    escrow holds its amount while open and nothing once closed (a vesting account may hold any
    non-negative amount: a worker's earnings not yet its own)."""
    problems = []
    if (total := sum(balance.values())) != 0:
        problems.append(f"accounts sum to {total}, not 0")
    for account, amount in sorted(balance.items()):
        if account != OPERATOR and amount < 0:
            problems.append(f"{account} is negative: {amount}")
    escrows = {a for a in balance if a.startswith(ESCROW_PREFIX)}
    for hold in holds:
        escrows.discard(escrow_account(hold.id))
        want = hold.amount if hold.state is HoldState.OPEN else 0
        have = balance.get(escrow_account(hold.id), 0)
        if have != want:
            problems.append(f"hold {hold.id} is {hold.state.value} but its escrow holds {have}, not {want}")
    problems.extend(f"{a} holds {balance[a]} for no hold" for a in sorted(escrows) if balance[a])
    return problems


def format_credits(micro: int) -> str:
    """Micro-credits as credits for people, exact: 1500000 -> '1.5'."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}" + (f".{frac:06d}".rstrip("0") if frac else "")
