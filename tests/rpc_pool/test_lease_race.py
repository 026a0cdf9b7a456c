"""The race that killed the expiry loop, with real RPC server processes: lease B is released the
moment lease A expires, while the loop is still ending A. The loop must go on expiring leases,
and shutdown must end every server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest

from hearth.rpc_pool.leases import LeaseManager, LeaseNotFound
from tests.rpc_pool.nodes import exited as gone

pytestmark = pytest.mark.slow


async def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        await asyncio.sleep(0.01)
    return False


def test_release_racing_expiry_keeps_the_expiry_loop_alive(tmp_path: Path) -> None:
    pids: list[int] = []

    async def scenario() -> None:
        manager = LeaseManager("127.0.0.1", 10**9, tmp_path / "cache", tmp_path / "logs", threads=1, ttl=30.0)
        async with manager.running():
            a = await manager.grant("10.0.0.2", "127.0.0.1", 1)
            b = await manager.grant("10.0.0.3", "127.0.0.1", 1)
            pids.extend(lease.server.pid for lease in (a, b))  # type: ignore[attr-defined]
            # Both due in the same round of the loop; the loop takes A out first and stops it...
            a.expires = b.expires = time.monotonic() - 1
            while a.lease_id in manager.leases:
                await asyncio.sleep(0)
            # ...and right then B's holder releases it (B is due too: "not found" is a fair answer).
            with contextlib.suppress(LeaseNotFound):
                await manager.release(b.lease_id, "10.0.0.3")
            c = await manager.grant("10.0.0.4", "127.0.0.1", 1)
            pids.append(c.server.pid)  # type: ignore[attr-defined]
            c.expires = time.monotonic() - 1
            expired = await wait_until(lambda: c.lease_id not in manager.leases, timeout=5)
            assert expired, "the expiry loop died: a lease past its expiry is still held"
            assert await wait_until(lambda: all(gone(pid) for pid in pids), timeout=5)
        assert not manager.leases

    try:
        asyncio.run(scenario())
        assert all(gone(pid) for pid in pids), "an RPC server outlived the node's shutdown"
    finally:
        for pid in pids:
            if not gone(pid):
                os.kill(pid, 9)
