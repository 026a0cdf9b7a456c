"""A coordinator killed with SIGKILL in the middle of settlements (issue 10, "How it is checked"):
after reopening, the books balance, no operation is half-written, and retrying every key the
dead process used charges nothing twice. On SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hearth.public_swarm.ledger import rules
from hearth.public_swarm.ledger.db import Ledger
from hearth.public_swarm.ledger.rules import HoldState
from tests.conftest import REPO

C = rules.MICRO
N = 60
HOLD = 2 * C
SERVED = C + 1
GRANT = 1000 * C

CHILD = f"""
import sys
from hearth.public_swarm.ledger.db import Ledger
led = Ledger.open(sys.argv[1])
for i in range(int(sys.argv[2])):
    hold = led.hold("alice", {HOLD}, f"crash-hold-{{i}}", ttl=3600)
    led.settle(hold.id, {SERVED}, "bobby", f"crash-settle-{{i}}")
    print(i, flush=True)
"""


def settle_all(led: Ledger) -> None:
    """What the restarted coordinator does: retry every operation with its key."""
    for i in range(N):
        hold = led.hold("alice", HOLD, f"crash-hold-{i}", ttl=3600)
        led.settle(hold.id, SERVED, "bobby", f"crash-settle-{i}")


@pytest.mark.slow
def test_sigkill_mid_settlement_then_retry_charges_once(ledger_url: str) -> None:
    with Ledger.open(ledger_url) as led:
        led.grant("alice", GRANT, "grant-alice")
    child = subprocess.Popen([sys.executable, "-c", CHILD, ledger_url, str(N)], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if int(line) >= 20:
                break
        time.sleep(0.007)  # land somewhere inside a later operation, not between two
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""

    with Ledger.open(ledger_url) as led:
        assert led.audit() == []  # every operation is whole or absent
        done = sum(1 for ln in led.statement("bobby", 1000))
        assert 21 <= done < N, done
        assert led.balance("bobby") == done * SERVED
        open_holds = led.holds_of("alice")
        assert len(open_holds) <= 1  # at most the hold whose settlement was cut off
        assert led.balance("alice") == GRANT - done * SERVED - len(open_holds) * HOLD
        settle_all(led)
        after = led.balances()
        settle_all(led)  # and once more: nothing changes
        assert led.balances() == after
        assert led.audit() == []
        assert led.balance("alice") == GRANT - N * SERVED
        assert led.balance("bobby") == N * SERVED
        assert led.balance("operator") == -GRANT
        every = led.holds_of("alice", open_only=False)
        assert len(every) == N and all(h.state is HoldState.SETTLED for h in every)
