"""The public swarm's credit ledger: double-entry credits, holds and settlements.

`rules` is the pure core (what an operation may do, which entries it makes); `db.Ledger` runs it
on SQLite or PostgreSQL with Alembic migrations; `errors` holds its refusals.
"""
