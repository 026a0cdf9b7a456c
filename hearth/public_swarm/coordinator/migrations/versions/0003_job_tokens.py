"""A job's streamed token ids, who streamed what, and its result; the workers linked now.

Revision ID: c0003
Revises: c0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0003"
down_revision = "c0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("coordinator_jobs") as batch:
        batch.add_column(sa.Column("token_ids", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("parts", sa.Text, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("result", sa.Text, nullable=True))
    op.create_table(
        "coordinator_links",
        sa.Column("node_id", sa.String(64), primary_key=True),
        sa.Column("models", sa.Text, nullable=False),
        sa.Column("max_jobs", sa.Integer, nullable=False),
        sa.Column("seen_at", sa.Double, nullable=False),
    )
    op.create_index("ix_coordinator_links_seen", "coordinator_links", ["seen_at"])


def downgrade() -> None:
    op.drop_table("coordinator_links")
    with op.batch_alter_table("coordinator_jobs") as batch:
        batch.drop_column("result")
        batch.drop_column("parts")
        batch.drop_column("token_ids")
