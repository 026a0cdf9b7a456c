"""The coordinator's own tables (SQLAlchemy Core), as its newest migration leaves them.

They live in the ledger's database but in a second Alembic chain (`migrations/`, version table
`coordinator_alembic_version`): the ledger stays a building block that knows nothing of workers
or jobs and can be migrated and tested alone, while the coordinator's tables change with the job
protocol without touching the ledger's history. A change here needs a new migration too.

- `workers`: one row per worker identity (its node id), refreshed by every registration;
  `last_seen` says whether it is live.
- `worker_models`: what each worker holds, by GGUF sha256 digest; a registration replaces its
  worker's rows in the same transaction. Indexed by digest: "who serves these weights?".
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Double, ForeignKey, Index, Integer, MetaData, String, Table

metadata = MetaData()

workers = Table(
    "coordinator_workers", metadata,
    Column("node_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("cpu", String(128), nullable=False),
    Column("cores", Integer, nullable=False),
    Column("memory_bytes", BigInteger, nullable=False),
    Column("gpu", String(128), nullable=True),
    Column("gpu_memory_bytes", BigInteger, nullable=False),
    Column("registered_at", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Index("ix_coordinator_workers_seen", "last_seen"),
)

worker_models = Table(
    "coordinator_worker_models", metadata,
    Column("node_id", String(64), ForeignKey("coordinator_workers.node_id", ondelete="CASCADE"),
           primary_key=True),
    Column("digest", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("n_params", BigInteger, nullable=False),
    Column("quantization", String(16), nullable=False),
    Column("n_ctx", Integer, nullable=False),
    Column("decode_tps", Double, nullable=False),
    Index("ix_coordinator_worker_models_digest", "digest"),
)
