"""The coordinator's worker registry: workers and the models they hold.

Revision ID: c0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coordinator_workers",
        sa.Column("node_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("cpu", sa.String(128), nullable=False),
        sa.Column("cores", sa.Integer, nullable=False),
        sa.Column("memory_bytes", sa.BigInteger, nullable=False),
        sa.Column("gpu", sa.String(128), nullable=True),
        sa.Column("gpu_memory_bytes", sa.BigInteger, nullable=False),
        sa.Column("registered_at", sa.Double, nullable=False),
        sa.Column("last_seen", sa.Double, nullable=False),
    )
    op.create_index("ix_coordinator_workers_seen", "coordinator_workers", ["last_seen"])
    op.create_table(
        "coordinator_worker_models",
        sa.Column("node_id", sa.String(64), sa.ForeignKey("coordinator_workers.node_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("n_params", sa.BigInteger, nullable=False),
        sa.Column("quantization", sa.String(16), nullable=False),
        sa.Column("n_ctx", sa.Integer, nullable=False),
        sa.Column("decode_tps", sa.Double, nullable=False),
    )
    op.create_index("ix_coordinator_worker_models_digest", "coordinator_worker_models", ["digest"])


def downgrade() -> None:
    op.drop_table("coordinator_worker_models")
    op.drop_table("coordinator_workers")
