"""Trust in the public radius (issue 11): spot-check and canary jobs in the queue, each worker's
standing, and the spot-checks themselves.

- `coordinator_jobs` gains `purpose` ('user', 'check' or 'canary'), `target` (only this worker may
  claim it: a canary), `avoid` (JSON list of worker ids that may not claim it), `avoid_owner` (no
  worker of this owner may claim it: a check never goes to the checked worker's owner), `parent`
  (the job a check scores) and `verified_only` (only trusted workers may claim it).
- `coordinator_trust`: one row per worker: its owner, state, counts, escrow and quarantine.
- `coordinator_checks`: one row per spot-check: which job and worker it checks, which worker
  scored it, and the outcome once decided (applied once: the row's outcome moves from 'pending'
  exactly once).

Revision ID: c0006
Revises: c0005 (nonces)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0006"
down_revision = "c0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("coordinator_jobs") as batch:
        batch.add_column(sa.Column("purpose", sa.String(8), nullable=False, server_default="user"))
        batch.add_column(sa.Column("target", sa.String(64), nullable=True))
        batch.add_column(sa.Column("avoid", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("avoid_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("parent", sa.String(64), nullable=True))
        batch.add_column(sa.Column("verified_only", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("ix_coordinator_jobs_parent", "coordinator_jobs", ["parent"])
    op.create_table(
        "coordinator_trust",
        sa.Column("node_id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reference", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("jobs", sa.Integer, nullable=False, server_default="0"),
        sa.Column("verified", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("streak", sa.Integer, nullable=False, server_default="0"),
        sa.Column("aborted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("suspicions", sa.Integer, nullable=False, server_default="0"),
        sa.Column("escrow_since", sa.Double, nullable=True),
        sa.Column("quarantined_until", sa.Double, nullable=True),
        sa.Column("first_seen", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ix_coordinator_trust_owner", "coordinator_trust", ["owner"])
    op.create_table(
        "coordinator_checks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("verifier", sa.String(64), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("decided_at", sa.Double, nullable=True),
    )
    op.create_index("ix_coordinator_checks_worker", "coordinator_checks", ["worker", "created_at"])
    op.create_index("ix_coordinator_checks_job", "coordinator_checks", ["job_id"])


def downgrade() -> None:
    op.drop_table("coordinator_checks")
    op.drop_table("coordinator_trust")
    op.drop_index("ix_coordinator_jobs_parent", "coordinator_jobs")
    with op.batch_alter_table("coordinator_jobs") as batch:
        for name in ("verified_only", "parent", "avoid_owner", "avoid", "target", "purpose"):
            batch.drop_column(name)
