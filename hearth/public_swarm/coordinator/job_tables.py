"""The job queue's table (SQLAlchemy Core), as migrations c0002, c0003 and c0005 (the hold index)
leave it; on the coordinator's `metadata` (see `tables`), so its Alembic chain knows it.
A change here needs a new migration too.

- `coordinator_jobs`: one row per job. `submit_key` is unique per requester (a retried submit
  finds its job); `claim_key` lets a worker retry a claim; `(state, digest, created_at)` is the
  index a claim walks, oldest queued job of the worker's models first.
- c0003 adds `token_ids` (JSON list: the stream's token ids, for a resuming worker), `parts` (JSON
  list of [worker, tokens]: who streamed what, for paying each) and `result` (JSON, once done),
  and the table `coordinator_links` (below).
- c0006 (issue 11) adds `purpose` (user | check | canary), `target`, `avoid`, `avoid_owner`,
  `parent` and `verified_only` (who may claim a job), and the tables `coordinator_trust` and
  `coordinator_checks` (below).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Double, Index, Integer, String, Table, Text, UniqueConstraint, false

from hearth.public_swarm.coordinator.tables import metadata

jobs = Table(
    "coordinator_jobs", metadata,
    Column("id", String(64), primary_key=True),
    Column("requester", String(64), nullable=False),
    Column("submit_key", String(128), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("request", Text, nullable=False),
    Column("max_tokens", Integer, nullable=False),
    Column("hold_id", String(64), nullable=True),
    Column("state", String(16), nullable=False),
    Column("worker_id", String(64), nullable=True),
    Column("claim_key", String(128), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("lease_s", Double, nullable=True),
    Column("lease_expires", Double, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("token_ids", Text, nullable=False, server_default="[]"),
    Column("parts", Text, nullable=False, server_default="[]"),
    Column("result", Text, nullable=True),
    Column("purpose", String(8), nullable=False, server_default="user"),
    Column("target", String(64), nullable=True),
    Column("avoid", Text, nullable=False, server_default="[]"),
    Column("avoid_owner", String(64), nullable=True),
    Column("parent", String(64), nullable=True),
    Column("verified_only", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("requester", "submit_key", name="uq_coordinator_jobs_submit"),
    Index("ix_coordinator_jobs_queue", "state", "digest", "created_at"),
    Index("ix_coordinator_jobs_lease", "state", "lease_expires"),
    Index("ix_coordinator_jobs_requester", "requester", "created_at"),
    Index("ix_coordinator_jobs_hold", "hold_id"),
    Index("ix_coordinator_jobs_parent", "parent"),
)

links = Table(
    "coordinator_links", metadata,
    Column("node_id", String(64), primary_key=True),
    Column("models", Text, nullable=False),
    Column("max_jobs", Integer, nullable=False),
    Column("seen_at", Double, nullable=False),
    Index("ix_coordinator_links_seen", "seen_at"),
)
"""Workers linked to some coordinator process now (`presence`, migration c0003): the models of each
worker's Hello as JSON, refreshed by its process every sweep."""

trust = Table(
    "coordinator_trust", metadata,
    Column("node_id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reference", Boolean, nullable=False, server_default=false()),
    Column("jobs", Integer, nullable=False, server_default="0"),
    Column("verified", Integer, nullable=False, server_default="0"),
    Column("failed", Integer, nullable=False, server_default="0"),
    Column("streak", Integer, nullable=False, server_default="0"),
    Column("aborted", Integer, nullable=False, server_default="0"),
    Column("suspicions", Integer, nullable=False, server_default="0"),
    Column("escrow_since", Double, nullable=True),
    Column("quarantined_until", Double, nullable=True),
    Column("first_seen", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("ix_coordinator_trust_owner", "owner"),
)
"""Each worker's standing (migration c0006, issue 11): its owner (the network it links from, or
the operator's reference), state (new | trusted | quarantined), counts of finished, verified and
failed jobs, the run of verified jobs since its last failure (`streak`, which sets its check
rate), aborted jobs and other suspicions, since when its earnings sit in escrow, and until when
it is quarantined."""

checks = Table(
    "coordinator_checks", metadata,
    Column("id", String(64), primary_key=True),
    Column("job_id", String(64), nullable=False),
    Column("worker", String(64), nullable=False),
    Column("verifier", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("decided_at", Double, nullable=True),
    Index("ix_coordinator_checks_worker", "worker", "created_at"),
    Index("ix_coordinator_checks_job", "job_id"),
)
"""One row per spot-check (c0006): the job and worker it checks, the worker that scored it, and
its outcome (pending, then passed | failed | inconclusive, written once)."""
