"""The credit ledger: accounts, entries, holds.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("created_at", sa.Double, nullable=False),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("op_key", sa.String(160), nullable=False),
        sa.Column("leg", sa.SmallInteger, nullable=False),
        sa.Column("request", sa.String(400), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("debit", sa.String(80), nullable=False),
        sa.Column("credit", sa.String(80), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("hold_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.UniqueConstraint("op_key", "leg", name="uq_ledger_entries_key"),
        sa.CheckConstraint("amount > 0", name="ck_ledger_entries_amount"),
        sa.CheckConstraint("debit <> credit", name="ck_ledger_entries_two_sides"),
    )
    op.create_index("ix_ledger_entries_debit", "ledger_entries", ["debit"])
    op.create_index("ix_ledger_entries_credit", "ledger_entries", ["credit"])
    op.create_index("ix_ledger_entries_hold", "ledger_entries", ["hold_id"])
    op.create_table(
        "ledger_holds",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("requester", sa.String(80), sa.ForeignKey("ledger_accounts.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("closed_at", sa.Double, nullable=True),
        sa.CheckConstraint("amount > 0", name="ck_ledger_holds_amount"),
    )
    op.create_index("ix_ledger_holds_open", "ledger_holds", ["state", "expires_at"])
    op.create_index("ix_ledger_holds_requester", "ledger_holds", ["requester"])


def downgrade() -> None:
    op.drop_table("ledger_holds")
    op.drop_table("ledger_entries")
    op.drop_table("ledger_accounts")
