"""`hearth coordinator`'s limit options reach the running process: a real coordinator started with
small limits refuses past them, and out-of-range options are refused before it starts."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from hearth.public_swarm.coordinator.presence import Presence
from tests.conftest import HEARTH, REPO, hearth_env
from tests.public_swarm.coordinator_proc import coordinator
from tests.public_swarm.dispatch_kit import MODEL
from tests.public_swarm.limits_kit import client, job_body


def test_the_options_set_the_running_coordinators_limits(tmp_path: Path) -> None:
    options = ("--address-rate", "0.5", "--address-burst", "3", "--free-tokens", "0", "--jobs-per-worker", "2")
    with coordinator(tmp_path / "c", None, *options) as coord:
        async def scenario() -> None:
            async with client(coord.url, "127.0.0.7") as c:
                assert [(await c.get("/v1/prices")).status_code for _ in range(3)] == [200] * 3
                over = await c.get("/v1/prices")
                assert over.status_code == 429 and over.headers["retry-after"] == "2"
                assert over.json()["error"]["code"] == "rate_limited"
            async with client(coord.url, "127.0.0.8") as c:  # --free-tokens 0: unsigned requests must sign
                free = await c.post("/v1/jobs", json=job_body("free-key-0"))
                assert free.status_code == 401 and free.json()["error"]["code"] == "signature_required", free.text

        with coord.ledger() as ledger:  # a worker linked to another coordinator process serves MODEL
            later = time.time() + 3600
            Presence(ledger.engine, clock=lambda: later).publish([("elsewhere-worker", (MODEL,), 1)])

        asyncio.run(scenario())
    log = next((tmp_path / "c").glob("coordinator-*.log")).read_text()
    assert "limits: 0.5/s (burst 3) per address" in log and "2 per worker" in log and "0 free tokens" in log
    assert "spot-checks: off (HEARTH_SPOT_CHECKS=off)" in log  # the kit's coordinators run without trust


def test_out_of_range_limits_are_refused_before_starting(tmp_path: Path) -> None:
    for bad in (["--jobs-per-worker", "65"], ["--address-rate", "0"], ["--identity-burst", "0"]):
        done = subprocess.run([*HEARTH, "coordinator", "--bind", "127.0.0.1", "--port", "1", *bad],
                              env=hearth_env(tmp_path), capture_output=True, text=True, cwd=REPO, timeout=60)
        assert done.returncode == 2, (bad, done.stdout, done.stderr)
        assert bad[0] in done.stderr + done.stdout
