"""A real `hearth coordinator` process on 127.0.0.1 and a free port, for the coordinator's tests."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hearth.identity import NodeIdentity
from hearth.public_swarm.ledger.db import Ledger
from tests.conftest import HEARTH, REPO, free_port, hearth_env, wait_answering


@dataclass
class Coordinator:
    url: str
    home: Path
    db: str
    operator: NodeIdentity
    """The identity in the coordinator's HEARTH_HOME: the only one that may grant."""
    proc: subprocess.Popen[bytes]

    def ledger(self) -> Ledger:
        """The coordinator's ledger, opened from this process (the same database)."""
        return Ledger.open(self.db, pool_size=1)


@contextmanager
def coordinator(home: Path, db: str | None = None, *args: str, env: dict[str, str] | None = None) -> Iterator[Coordinator]:
    """`hearth coordinator --bind 127.0.0.1 --port FREE [--db DB] ARGS` until the block ends (SIGTERM);
    `env`: HEARTH_* settings for it (spot-checks off unless `env` turns them on: issue 11's escrow would
    change the books the tests of other things check)."""
    home.mkdir(parents=True, exist_ok=True)
    operator = NodeIdentity.load_or_create(home)
    port = free_port()
    db = db or f"sqlite:///{home / 'coordinator.db'}"
    log_path = home / f"coordinator-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*HEARTH, "coordinator", "--bind", "127.0.0.1", "--port", str(port), "--db", db, *args],
                                env=hearth_env(home, **{"HEARTH_SPOT_CHECKS": "off", **(env or {})}), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(url + "/v1/prices", proc, log_path)
        yield Coordinator(url, home, db, operator, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
