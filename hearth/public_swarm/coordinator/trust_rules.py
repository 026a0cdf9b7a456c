"""A public worker's standing, with no I/O: who owns it, how much it is checked, when its earnings
leave escrow, and what a passed or failed check, a suspicion, a finished or aborted job does to it.

`trust.Trust` reads a worker's row (`coordinator_trust`), calls one transition here and writes
what it returns, in one transaction, with the ledger move (`Move`) the transition asks for.

The policy, as constants below (each says why):
- A new worker (`NEW`) is paid into its escrow account (`ledger.rules.vesting_account`) until it
  has `VEST_AFTER_VERIFIED` verified checks in a row, or `ESCROW_MAX_S` passed since its escrow
  began with no failure. Then it is `TRUSTED` and its escrow vests (moves to its own account).
- A trusted worker is still paid into escrow for "the checked period": since its last passed
  check. Each passed check vests the whole escrow; so does `ESCROW_MAX_S` without a check (the
  sweep), so a rarely checked worker is not kept waiting for ever. A cheater can thus lose at most
  what it earned since its last passed check (or within one `ESCROW_MAX_S`).
- A failed check forfeits the escrow to the operator, resets the streak (so the check rate goes
  back to `verify.NEW_RATE`) and makes the worker `NEW` again with a fresh escrow period.
  `QUARANTINE_AFTER` failures within `FAILURE_WINDOW_S` quarantine it for `QUARANTINE_S`: it may
  not serve; the sweep lifts the quarantine and it starts again as `NEW`.
- A receipt or count mismatch (the protocol closes such a link) counts as a failed check.
- Suspicions (aborting many jobs, streaming faster than its declared hardware allows) reset the
  streak (more checks) but forfeit nothing: they are signals, not proof.
- The operator's reference workers are `TRUSTED`, never escrowed and never spot-checked.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from enum import StrEnum

from hearth.errors import HearthError, InvalidRequest
from hearth.identity import NODE_ID_LEN
from hearth.public_swarm import verify

VEST_AFTER_VERIFIED = 10
"""Verified checks in a row a new worker needs before its earnings vest: at `verify.check_rate`'s
rates for streaks 0-9 (25 % falling to about 13 %) that is about 55 jobs, long enough that a
cheater which passes a few checks by luck is caught before its escrow ever leaves (its chance to
pass 10 independent checks is negligible for the three cheats of issue 11, each failing a check
with near certainty)."""
ESCROW_MAX_S = 24 * 3600.0
"""The longest earnings wait in escrow without a failure (a new worker's first period, and each
checked period after): one day bounds what an honest but rarely checked worker waits for."""
QUARANTINE_AFTER = 3
"""Failures within `FAILURE_WINDOW_S` that quarantine a worker. One failure may be bad luck (a
drifted build, a flaky machine): it costs the escrow and the streak; three is a pattern."""
FAILURE_WINDOW_S = 7 * 24 * 3600.0
"""How far back failures count towards a quarantine (a week)."""
QUARANTINE_S = 24 * 3600.0
"""How long a quarantined worker may not serve (a day): long enough to cost a cheater its income,
short enough that an honest machine fixed by its owner comes back without the operator."""
ABORT_MIN_JOBS = 20
"""Finished plus aborted jobs before the abort share means anything (a few losses are normal)."""
ABORT_SHARE = 0.3
"""A worker aborting more than this share of its jobs is suspected (it may be dropping work it
cannot fake, or be unfit to serve); each further abort while above it is another suspicion."""
TOO_FAST_FACTOR = 3.0
"""A job streamed faster than this many times the worker's own declared tokens/s is suspected:
declared speeds are measured by the worker on its hardware, and real runs rarely beat them by 3x."""
TOO_FAST_MIN_TOKENS = 32
"""Jobs shorter than this are not timed for speed: a short burst measures buffering, not decoding."""
MAX_REASON = 400
"""Characters of a reason kept (reasons are ours, but bounded anyway)."""
RANK_SHARE_STEP = 0.05
"""Verified shares are compared in steps of this size, so the worker's speed breaks near-ties."""

RECEIPT_MISMATCH = "receipt mismatch"
COUNT_MISMATCH = "count mismatch"
ABORTS = "too many aborted jobs"
TOO_FAST = "too fast"
FAILURE_REASONS = (RECEIPT_MISMATCH, COUNT_MISMATCH)
"""Suspicion reasons starting with one of these count as a failed check (`counts_as_failure`)."""

NODE_ID = re.compile(rf"[a-z2-7]{{{NODE_ID_LEN}}}")
CHECK_ID = re.compile(r"[A-Za-z0-9._:-]{8,64}")
"""A check's id (the coordinator picks it, e.g. the check job's id)."""


class TrustInputInvalid(InvalidRequest):
    """A node id, check id, address or reason given to the trust rules is malformed."""

    code = "invalid_trust_input"


class TrustRefused(HearthError):
    """Category: a well-formed trust operation refused; nothing was written."""

    http_status = 409
    error_type = "invalid_request_error"
    code = "trust_refused"


class WorkerUnknown(TrustRefused):
    """No standing for that worker: it never linked to this coordinator (`Trust.seen` first)."""

    http_status = 404
    code = "worker_unknown"


class CheckNotFound(TrustRefused):
    """No spot-check has that id (`Trust.open_check` first)."""

    http_status = 404
    code = "check_not_found"


class CheckConflict(TrustRefused):
    """That check id is already open for another job or worker: use a fresh id per check."""

    code = "check_conflict"


class TrustState(StrEnum):
    NEW = "new"
    """Earnings in escrow until its first run of verified checks (or a day without failure)."""
    TRUSTED = "trusted"
    """Past its first escrow period; still checked at its (lower) rate."""
    QUARANTINED = "quarantined"
    """Failed repeatedly: may not serve until `quarantined_until`."""


class Move(StrEnum):
    """The ledger move a transition asks for, on the worker's escrow account."""

    NONE = "none"
    VEST = "vest"
    """The whole escrow to the worker."""
    FORFEIT = "forfeit"
    """The whole escrow to the operator."""


@dataclass(frozen=True)
class Standing:
    """One worker's row of `coordinator_trust` (all times are seconds since the epoch)."""

    node_id: str
    owner: str
    state: TrustState
    reference: bool
    jobs: int
    verified: int
    failed: int
    streak: int
    aborted: int
    suspicions: int
    escrow_since: float | None
    quarantined_until: float | None
    first_seen: float

    def check_rate(self) -> float:
        """The chance one finished job is spot-checked: never for the operator's reference workers,
        else `verify.check_rate` (high while the streak is short, back up after any failure)."""
        return 0.0 if self.reference else verify.check_rate(self.streak, self.failed)

    def may_serve(self, now: float) -> bool:
        """False while quarantined (even before the sweep lifts an ended quarantine, the time decides)."""
        return not (self.state is TrustState.QUARANTINED
                    and (self.quarantined_until is None or now < self.quarantined_until))

    def in_escrow(self, now: float) -> bool:
        """Whether earnings go to its escrow account now: always but for reference workers (new
        workers until they vest, trusted ones for their checked period, quarantined ones until
        they start again). `now` is kept for the contract; the rule does not depend on it today."""
        del now
        return not self.reference

    @property
    def verified_share(self) -> float:
        """Verified checks over all decided checks; 0.0 before any."""
        decided = self.verified + self.failed
        return self.verified / decided if decided else 0.0

    def rank(self) -> tuple[int, float, int]:
        """Sort key for routing, lower first: reference, then trusted, then new, then quarantined;
        within a tier a higher verified share (in `RANK_SHARE_STEP` steps), then a longer streak
        (counted up to `VEST_AFTER_VERIFIED`: longer runs say no more). Equal keys are left to the
        dispatcher's own order (e.g. faster first): append its key after this one."""
        tier = (0 if self.reference else {TrustState.TRUSTED: 1, TrustState.NEW: 2,
                                           TrustState.QUARANTINED: 3}[self.state])
        share = round(self.verified_share / RANK_SHARE_STEP) * RANK_SHARE_STEP
        return tier, -share, -min(self.streak, VEST_AFTER_VERIFIED)


@dataclass(frozen=True)
class Step:
    """What a transition leaves: the new standing and the ledger move to make with it."""

    standing: Standing
    move: Move = Move.NONE


def check_node_id(node_id: object, what: str = "node_id") -> str:
    if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
        raise TrustInputInvalid(f"{what} must be a node id ({NODE_ID_LEN} characters of a-z, 2-7); "
                                f"got {node_id!r:.80}", param=what)
    return node_id


def check_check_id(check_id: object) -> str:
    if not isinstance(check_id, str) or not CHECK_ID.fullmatch(check_id):
        raise TrustInputInvalid(f"check_id must be 8-64 characters of A-Z, a-z, 0-9, '.', '_', ':', '-'; "
                                f"got {check_id!r:.80}", param="check_id")
    return check_id


def check_reason(reason: object) -> str:
    """A reason, cut to `MAX_REASON` characters (it is shown, never parsed but by prefix)."""
    if not isinstance(reason, str):
        raise TrustInputInvalid(f"reason must be text; got {reason!r:.80}", param="reason")
    return reason[:MAX_REASON]


def owner_of(node_id: str, address: str) -> str:
    """Who is taken to own a worker: its network (IPv4 /24, IPv6 /64), since one person's machines
    usually share one, and a check must not go to the checked worker's owner. A loopback address
    gives each node its own owner `local:<node_id>` (tests run every worker on 127.0.0.1); an
    IPv4-mapped IPv6 address counts as its IPv4 one."""
    check_node_id(node_id)
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else None
    except ValueError:
        ip = None
    if ip is None:
        raise TrustInputInvalid(f"address must be an IP address; got {address!r:.80}", param="address")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return f"local:{node_id}"
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def too_fast(tokens: int, seconds: float, declared_tps: float) -> str | None:
    """A suspicion reason when a job streamed more than `TOO_FAST_FACTOR` times faster than the
    worker's declared tokens/s, else None. Not judged: jobs under `TOO_FAST_MIN_TOKENS` tokens, or a
    worker that declared no speed (declared_tps <= 0)."""
    if tokens < TOO_FAST_MIN_TOKENS or not declared_tps > 0:
        return None
    limit = TOO_FAST_FACTOR * declared_tps
    if seconds <= 0 or tokens / seconds > limit:
        shown = "instantly" if seconds <= 0 else f"at {tokens / seconds:.0f} tokens/s"
        return f"{TOO_FAST}: {tokens} tokens {shown}, over {limit:.0f} (3x its declared {declared_tps:.0f})"
    return None


def counts_as_failure(reason: str) -> bool:
    """Whether a suspicion is proof enough to count as a failed check (a receipt or count mismatch)."""
    return reason.startswith(FAILURE_REASONS)


def new_standing(node_id: str, owner: str, now: float, *, reference: bool = False) -> Standing:
    """A worker seen for the first time: new, its escrow starting now (a reference: trusted, no escrow)."""
    return Standing(check_node_id(node_id), owner, TrustState.TRUSTED if reference else TrustState.NEW,
                    reference, 0, 0, 0, 0, 0, 0, None if reference else now, None, now)


def after_seen(s: Standing, owner: str, now: float, *, reference: bool) -> Standing:
    """A worker linked again: its owner is where it links from now; a worker the operator made a
    reference is trusted and leaves escrow (its escrow vests at once, see `after_seen_move`); one
    no longer a reference keeps its state and starts an escrow period."""
    if reference:
        state = s.state if s.state is TrustState.QUARANTINED else TrustState.TRUSTED
        return replace(s, owner=owner, reference=True, state=state, escrow_since=None)
    return replace(s, owner=owner, reference=False,
                   escrow_since=now if s.escrow_since is None else s.escrow_since)


def after_seen_move(before: Standing, after: Standing) -> Move:
    """A worker that became a reference vests what its escrow held."""
    return Move.VEST if after.reference and not before.reference else Move.NONE


def after_job(s: Standing, now: float) -> Standing:
    """A user job it finished (checks and canaries are counted by their outcome instead)."""
    del now
    return replace(s, jobs=s.jobs + 1)


def after_suspicion(s: Standing, now: float) -> Standing:
    """A signal short of proof: one more suspicion and the streak starts again (more checks)."""
    del now
    return replace(s, suspicions=s.suspicions + 1, streak=0)


def abort_suspicious(s: Standing) -> bool:
    """Whether its aborted share is over `ABORT_SHARE` with at least `ABORT_MIN_JOBS` jobs."""
    total = s.jobs + s.aborted
    return total >= ABORT_MIN_JOBS and s.aborted > ABORT_SHARE * total


def after_abort(s: Standing, now: float) -> Standing:
    """A job it failed or lost; a suspicion too when it aborts too many (`abort_suspicious`)."""
    out = replace(s, aborted=s.aborted + 1)
    return after_suspicion(out, now) if abort_suspicious(out) else out


def after_verified(s: Standing, now: float) -> Step:
    """A passed check: one more verified and a longer streak. A new worker becomes trusted once its
    streak reaches `VEST_AFTER_VERIFIED` and its escrow vests; a trusted worker's escrow vests at
    every passed check (its checked period starts again). A quarantined worker's count grows but
    nothing vests until it serves again; a reference has no escrow."""
    out = replace(s, verified=s.verified + 1, streak=s.streak + 1)
    if s.reference or s.state is TrustState.QUARANTINED:
        return Step(out)
    if s.state is TrustState.NEW and out.streak < VEST_AFTER_VERIFIED:
        return Step(out)
    return Step(replace(out, state=TrustState.TRUSTED, escrow_since=now), Move.VEST)


def after_failed(s: Standing, now: float, recent_failures: int) -> Step:
    """A failed check (or a receipt or count mismatch). `recent_failures`: its failures within
    `FAILURE_WINDOW_S` before this one. The escrow is forfeited, the streak resets, the worker is
    new again with a fresh escrow period, or quarantined for `QUARANTINE_S` when this is its
    `QUARANTINE_AFTER`-th failure in the window. A reference is counted and may be quarantined
    (it is broken) but has no escrow to forfeit."""
    out = replace(s, failed=s.failed + 1, streak=0)
    if recent_failures + 1 >= QUARANTINE_AFTER:
        out = replace(out, state=TrustState.QUARANTINED, quarantined_until=now + QUARANTINE_S)
    elif not s.reference and s.state is not TrustState.QUARANTINED:
        out = replace(out, state=TrustState.NEW)
    if s.reference:
        return Step(out)
    return Step(replace(out, escrow_since=now), Move.FORFEIT)


def after_time(s: Standing, now: float) -> Step:
    """The sweep: an ended quarantine is lifted (new again, a fresh escrow period, streak 0); an
    escrow period of `ESCROW_MAX_S` without failure vests (a new worker becomes trusted)."""
    if s.state is TrustState.QUARANTINED:
        if s.quarantined_until is not None and now >= s.quarantined_until:
            state = TrustState.TRUSTED if s.reference else TrustState.NEW
            return Step(replace(s, state=state, quarantined_until=None, streak=0,
                                escrow_since=None if s.reference else now))
        return Step(s)
    if s.reference or s.escrow_since is None or now - s.escrow_since < ESCROW_MAX_S:
        return Step(s)
    return Step(replace(s, state=TrustState.TRUSTED, escrow_since=now), Move.VEST)


def is_due(s: Standing, now: float) -> bool:
    """Whether the sweep has something to do for this worker (`after_time` would change it)."""
    return after_time(s, now).standing != s
