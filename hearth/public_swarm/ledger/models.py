"""The ledger's tables (SQLAlchemy Core), as the newest migration leaves them.

The migrations in `migrations/versions/` create these; this module is what the queries in `db.py`
are written against. A change to a table needs both: a new migration and the change here.

- `accounts`: one row per participant (and the operator), made on first use. Its row is what a
  transaction locks (`SELECT … FOR UPDATE` on PostgreSQL) before it checks a balance and writes.
- `entries`: every movement, append-only. `(op_key, leg)` is unique: an operation's idempotency
  key with the entry's place in it (a settlement writes up to two entries under one key), so an
  operation is written whole or not at all, and once. `request` is the operation's arguments
  (`rules.fingerprint`), to tell a retry from a key reused with other arguments.
- `holds`: one row per hold, with its state; closing a hold and writing its entries is one
  transaction, so the state and the escrow's balance always agree.
- `moves` (migration 0002): one row per vest or forfeit of a worker's escrow account, keyed by its
  idempotency key, with the amount moved (0 too: the key is spent even when the escrow was empty).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit one.
_ID = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "ledger_accounts", metadata,
    Column("id", String(80), primary_key=True),
    Column("created_at", Double, nullable=False),
)

entries = Table(
    "ledger_entries", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("op_key", String(160), nullable=False),
    Column("leg", SmallInteger, nullable=False),
    Column("request", String(400), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("debit", String(80), nullable=False),
    Column("credit", String(80), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("hold_id", String(64), nullable=True),
    Column("created_at", Double, nullable=False),
    UniqueConstraint("op_key", "leg", name="uq_ledger_entries_key"),
    CheckConstraint("amount > 0", name="ck_ledger_entries_amount"),
    CheckConstraint("debit <> credit", name="ck_ledger_entries_two_sides"),
    Index("ix_ledger_entries_debit", "debit"),
    Index("ix_ledger_entries_credit", "credit"),
    Index("ix_ledger_entries_hold", "hold_id"),
)

holds = Table(
    "ledger_holds", metadata,
    Column("id", String(64), primary_key=True),
    Column("requester", String(80), ForeignKey("ledger_accounts.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("closed_at", Double, nullable=True),
    CheckConstraint("amount > 0", name="ck_ledger_holds_amount"),
    Index("ix_ledger_holds_open", "state", "expires_at"),
    Index("ix_ledger_holds_requester", "requester"),
)

moves = Table(
    "ledger_moves", metadata,
    Column("op_key", String(160), primary_key=True),
    Column("request", String(400), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("created_at", Double, nullable=False),
    CheckConstraint("amount >= 0", name="ck_ledger_moves_amount"),
)
