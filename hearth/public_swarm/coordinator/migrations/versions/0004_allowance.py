"""The anonymous free allowance: tokens used per client address (IPv4, or IPv6 /64) per UTC day.

Revision ID: c0004
Revises: c0003 (job tokens)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0004"
down_revision = "c0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coordinator_allowance",
        sa.Column("address", sa.String(64), primary_key=True),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
    )
    op.create_index("ix_coordinator_allowance_day", "coordinator_allowance", ["day"])


def downgrade() -> None:
    op.drop_table("coordinator_allowance")
