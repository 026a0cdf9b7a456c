"""Shared replay store for signed requests (`nonces`), and an index on a job's hold (the books sweep
joins open holds to their jobs).

Revision ID: c0005
Revises: c0004 (allowance)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0005"
down_revision = "c0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coordinator_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_index("ix_coordinator_nonces_expires", "coordinator_nonces", ["expires_at"])
    op.create_index("ix_coordinator_jobs_hold", "coordinator_jobs", ["hold_id"])


def downgrade() -> None:
    op.drop_index("ix_coordinator_jobs_hold", "coordinator_jobs")
    op.drop_table("coordinator_nonces")
