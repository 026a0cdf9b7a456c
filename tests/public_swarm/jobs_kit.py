"""Shared by the job queue's tests: worker ids, digests, a controllable clock, and a snapshot of
the whole jobs table (to show that a refused operation changed nothing)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from sqlalchemy import select

from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.coordinator.jobs import JobQueue


def node(i: int) -> str:
    """A well-formed node id (16 characters of a-z, 2-7)."""
    return base64.b32encode(i.to_bytes(10, "big")).decode().lower()


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def snapshot(q: JobQueue) -> list[tuple[Any, ...]]:
    with q.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(jobs).order_by(jobs.c.id))]
