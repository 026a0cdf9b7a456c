"""The coordinator's durable job queue.

Revision ID: c0002
Revises: c0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coordinator_jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("requester", sa.String(64), nullable=False),
        sa.Column("submit_key", sa.String(128), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("max_tokens", sa.Integer, nullable=False),
        sa.Column("hold_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.String(64), nullable=True),
        sa.Column("claim_key", sa.String(128), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("lease_s", sa.Double, nullable=True),
        sa.Column("lease_expires", sa.Double, nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.UniqueConstraint("requester", "submit_key", name="uq_coordinator_jobs_submit"),
    )
    op.create_index("ix_coordinator_jobs_queue", "coordinator_jobs", ["state", "digest", "created_at"])
    op.create_index("ix_coordinator_jobs_lease", "coordinator_jobs", ["state", "lease_expires"])
    op.create_index("ix_coordinator_jobs_requester", "coordinator_jobs", ["requester", "created_at"])


def downgrade() -> None:
    op.drop_table("coordinator_jobs")
