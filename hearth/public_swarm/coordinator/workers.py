"""The worker registry: who offers which models, on the ledger's database.

A registration is one transaction: the worker's row is made or refreshed and its models replaced,
so a reader never sees half a list. Several coordinator processes on one PostgreSQL share it; a
worker is live while its `last_seen` is recent (`LIVE_S`), whichever process it last spoke to.
Later, the job dispatcher asks `holders(digest)` for live workers of exact weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, insert, select, update

from hearth.public_swarm.coordinator.tables import worker_models, workers
from hearth.public_swarm.coordinator.wire import Hardware, ModelView, OfferedModel, WorkerRegistration, WorkerView
from hearth.public_swarm.ledger.engine import migrate
from hearth.public_swarm.pricing import price_of_quant

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "coordinator_alembic_version"
"""The coordinator's own Alembic version table, beside the ledger's (`ledger_alembic_version`)."""
_MIGRATE_LOCK = 0x6865617274680002
"""PostgreSQL advisory lock id (the ledger's is ...0001): concurrent starts migrate in turn."""
LIVE_S = 90.0
"""A worker not heard from for this long is not listed (workers refresh well within it)."""


def upgrade(engine: Engine) -> None:
    """Bring the coordinator's tables to the newest migration (idempotent; safe for concurrent starts)."""
    migrate(engine, MIGRATIONS, VERSION_TABLE, _MIGRATE_LOCK)


def model_view(m: OfferedModel) -> ModelView:
    price = price_of_quant(m.n_params, m.quantization)
    return ModelView(**m.model_dump(), credits_per_million_tokens=price.credits_per_mtok)


class WorkerStore:
    """The registry on `engine` (the ledger's: one pool, one database). Call `upgrade` first."""

    def __init__(self, engine: Engine, *, live_s: float = LIVE_S, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.live_s = live_s
        self.clock = clock

    def register(self, node_id: str, reg: WorkerRegistration) -> WorkerView:
        """Make or refresh `node_id`'s registration; its models become exactly `reg.models`."""
        now = self.clock()
        hw = reg.hardware
        values = {"name": reg.name, "cpu": hw.cpu, "cores": hw.cores, "memory_bytes": hw.memory_bytes,
                  "gpu": hw.gpu, "gpu_memory_bytes": hw.gpu_memory_bytes, "last_seen": now}
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # two registrations of one worker at once: in turn
                conn.execute(select(workers.c.node_id).where(workers.c.node_id == node_id).with_for_update())
            done = conn.execute(update(workers).where(workers.c.node_id == node_id).values(**values))
            if done.rowcount == 0:
                conn.execute(insert(workers).values(node_id=node_id, registered_at=now, **values))
            conn.execute(delete(worker_models).where(worker_models.c.node_id == node_id))
            conn.execute(insert(worker_models), [{"node_id": node_id, **m.model_dump()} for m in reg.models])
            view = self._view(conn, node_id)
        assert view is not None
        return view

    def live(self) -> list[WorkerView]:
        """Workers seen within `live_s`, most recently seen first."""
        since = self.clock() - self.live_s
        with self.engine.connect() as conn:
            rows = conn.execute(select(workers).where(workers.c.last_seen >= since)
                                .order_by(workers.c.last_seen.desc(), workers.c.node_id)).all()
            held = self._models(conn, [r.node_id for r in rows])
        return [_worker(r, held.get(r.node_id, [])) for r in rows]

    def known(self, node_ids: list[str]) -> dict[str, WorkerView]:
        """The registrations of these workers however long ago they were seen (a linked worker
        registers its hardware once per link, and the link, not the registry, says it is live)."""
        if not node_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(workers).where(workers.c.node_id.in_(node_ids[:1000]))).all()
            held = self._models(conn, [r.node_id for r in rows])
        return {r.node_id: _worker(r, held.get(r.node_id, [])) for r in rows}

    def holders(self, digest: str) -> list[WorkerView]:
        """Live workers holding the weights with this sha256 digest."""
        return [w for w in self.live() if any(m.digest == digest for m in w.models)]

    def _view(self, conn: Connection, node_id: str) -> WorkerView | None:
        row = conn.execute(select(workers).where(workers.c.node_id == node_id)).first()
        return None if row is None else _worker(row, self._models(conn, [node_id]).get(node_id, []))

    def _models(self, conn: Connection, node_ids: list[str]) -> dict[str, list[ModelView]]:
        out: dict[str, list[ModelView]] = {}
        if not node_ids:
            return out
        query = (select(worker_models).where(worker_models.c.node_id.in_(node_ids))
                 .order_by(worker_models.c.node_id, worker_models.c.name, worker_models.c.digest))
        for r in conn.execute(query):
            offered = OfferedModel(digest=r.digest, name=r.name, n_params=r.n_params, quantization=r.quantization,
                                   n_ctx=r.n_ctx, decode_tps=r.decode_tps)
            out.setdefault(r.node_id, []).append(model_view(offered))
        return out


def _worker(row: Row[Any], models: list[ModelView]) -> WorkerView:
    hardware = Hardware(cpu=row.cpu, cores=row.cores, memory_bytes=row.memory_bytes, gpu=row.gpu,
                        gpu_memory_bytes=row.gpu_memory_bytes)
    return WorkerView(node_id=row.node_id, name=row.name, models=models, hardware=hardware,
                      registered_at=row.registered_at, last_seen=row.last_seen)
