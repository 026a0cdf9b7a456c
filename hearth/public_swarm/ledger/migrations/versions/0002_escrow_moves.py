"""Workers' escrow moves (issue 11): `ledger_moves`, one row per vest or forfeit, keyed by its
idempotency key, with the amount it moved (0 included: an empty escrow moves nothing and writes
no entry, but the key is still spent, so the same key later returns 0 again instead of moving
credits that arrived since).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_moves",
        sa.Column("op_key", sa.String(160), primary_key=True),
        sa.Column("request", sa.String(400), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.CheckConstraint("amount >= 0", name="ck_ledger_moves_amount"),
    )


def downgrade() -> None:
    op.drop_table("ledger_moves")
