"""Which workers are linked to any coordinator process now, in the shared database.

Each process publishes its own links (node id, the models of its Hello, max_jobs) every sweep and
removes those that left; a row not refreshed within `live_s` (its process died) is not read. So
every process answers `GET /v1/models` and opens jobs for models served by workers linked to
another process; the process holding the link claims and runs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence

from pydantic import ValidationError
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from hearth.public_swarm.coordinator.job_tables import links as links_table
from hearth.public_swarm.protocol.messages import ModelOffer

LIVE_S = 10.0
"""A published link not refreshed for this long is taken as gone (processes refresh every sweep)."""


class Presence:
    """The `coordinator_links` table on `engine` (migration c0003)."""

    def __init__(self, engine: Engine, *, live_s: float = LIVE_S, clock: Callable[[], float] = time.time) -> None:
        self.engine, self.live_s, self.clock = engine, live_s, clock
        self._pg = engine.dialect.name == "postgresql"
        self._mine: set[str] = set()

    def publish(self, linked: Iterable[tuple[str, Sequence[ModelOffer], int]]) -> None:
        """This process's links now: each refreshed, those published before and gone removed."""
        now = self.clock()
        current = list(linked)
        names = {n for n, _, _ in current}
        rows = [{"node_id": n, "models": json.dumps([m.model_dump(mode="json") for m in models]),
                 "max_jobs": max_jobs, "seen_at": now} for n, models, max_jobs in current]
        gone = self._mine - names
        with self.engine.begin() as conn:
            if gone:
                conn.execute(delete(links_table).where(links_table.c.node_id.in_(sorted(gone))))
            for row in rows:
                stmt = (postgresql.insert if self._pg else sqlite.insert)(links_table).values(**row)
                conn.execute(stmt.on_conflict_do_update(index_elements=["node_id"], set_={
                    "models": stmt.excluded.models, "max_jobs": stmt.excluded.max_jobs,
                    "seen_at": stmt.excluded.seen_at}))
        self._mine = names

    def live(self) -> list[tuple[str, tuple[ModelOffer, ...]]]:
        """(node id, models) of every worker linked to some process and refreshed lately."""
        since = self.clock() - self.live_s
        with self.engine.connect() as conn:
            rows = conn.execute(select(links_table.c.node_id, links_table.c.models)
                                .where(links_table.c.seen_at >= since)).all()
        out = []
        for node_id, models in rows:
            try:
                out.append((node_id, tuple(ModelOffer.model_validate(m) for m in json.loads(models))))
            except (ValueError, ValidationError):
                continue  # written by another build: not ours to read
        return out
