"""Who may claim a job (issue 11), with no I/O: the columns migration c0006 added and the one rule
`JobQueue.claim` applies in SQL and `may_claim` states in Python (tests hold the two equal).

- `purpose`: 'user' (a requester's job), 'check' (a spot-check: score another job's tokens) or
  'canary' (a greedy job the coordinator made up to test one worker; it looks like any other).
- `target`: only this worker may claim the job (a canary).
- `avoid`: these workers may not (the checked worker, for a check).
- `avoid_owner`: no worker of this owner may (`trust_rules.owner_of`: a check never goes to a
  machine of the checked worker's network). A claim that does not say its owner takes no such job.
- `verified_only`: only a trusted worker may (a requester asked for verified workers only).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from hearth.public_swarm.coordinator.job_rules import JOB_ID, Job, JobInputInvalid, check_worker_id

PURPOSES = ("user", "check", "canary")
MAX_AVOID = 16
OWNER = re.compile(r"[A-Za-z0-9:./_-]{1,64}")
"""An owner as `trust_rules.owner_of` names it: an address prefix ('192.0.2.0/24', '2001:db8::/64'),
'local:<node id>' or 'reference'."""


@dataclass(frozen=True)
class Routing:
    """A job's claim columns, checked."""

    purpose: str = "user"
    target: str | None = None
    avoid: tuple[str, ...] = ()
    avoid_owner: str | None = None
    parent: str | None = None
    verified_only: bool = False

    def is_default(self) -> bool:
        return self == Routing()

    def fingerprint_part(self) -> str:
        """What a submit's idempotency key also binds (empty for a plain user job, so the
        fingerprints of jobs stored before issue 11 are unchanged)."""
        if self.is_default():
            return ""
        return "|".join([self.purpose, self.target or "", ",".join(self.avoid), self.avoid_owner or "",
                         self.parent or "", "1" if self.verified_only else "0"])


def check_owner(owner: object, param: str = "owner") -> str:
    if not isinstance(owner, str) or not OWNER.fullmatch(owner):
        raise JobInputInvalid(f"{param} must be 1-64 characters of A-Z, a-z, 0-9, ':./_-'; got {owner!r:.80}",
                              param=param)
    return owner


def check_routing(purpose: object = "user", target: object = None, avoid: Collection[object] = (),
                  avoid_owner: object = None, parent: object = None, verified_only: object = False) -> Routing:
    """The claim columns of a submit, or JobInputInvalid (nothing is written)."""
    if purpose not in PURPOSES:
        raise JobInputInvalid(f"purpose must be one of {', '.join(PURPOSES)}; got {purpose!r:.40}", param="purpose")
    if not isinstance(avoid, list | tuple | set | frozenset) or len(avoid) > MAX_AVOID:
        raise JobInputInvalid(f"avoid must be at most {MAX_AVOID} worker ids", param="avoid")
    if parent is not None and (not isinstance(parent, str) or not JOB_ID.fullmatch(parent)):
        raise JobInputInvalid(f"parent must be a job id; got {parent!r:.40}", param="parent")
    if type(verified_only) is not bool:
        raise JobInputInvalid(f"verified_only must be true or false; got {verified_only!r:.40}", param="verified_only")
    return Routing(str(purpose), None if target is None else check_worker_id(target),
                   tuple(sorted({check_worker_id(w) for w in avoid})),
                   None if avoid_owner is None else check_owner(avoid_owner, "avoid_owner"),
                   parent, verified_only)


def may_claim(job: Job, worker_id: str, owner: str | None, trusted: bool) -> bool:
    """Whether `worker_id` (of `owner`, trusted or not) may take `job` (the claim's SQL, in Python)."""
    if job.target is not None and job.target != worker_id:
        return False
    if worker_id in job.avoid:
        return False
    if job.avoid_owner is not None and (owner is None or owner == job.avoid_owner):
        return False
    return trusted or not job.verified_only
