"""The status's public figures from real parts, no model: a real `hearth coordinator` and a real
`hearth serve --radius public` on loopback (the server's own account as the ledger has it, the
swarm's counts; the coordinator stopped: still answered at once, not connected, the last figures
kept), a contribute's page app on a real socket (contributing with its counts), and junk from a
tiny local server in both places (not connected, not contributing, never a 500). No secret
(API key, account key) in any answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hearth.identity import NodeIdentity
from hearth.net import b64
from hearth.node_api.status import STATUS_PATH, ServeStatus
from hearth.public_swarm.coordinator.wire import Credits, LineView
from hearth.public_swarm.worker_page import Earnings, Served, page_app
from tests.conftest import Server, free_port, start_server, stop_server
from tests.escalation.junk_http import junk_server
from tests.public_swarm.coordinator_proc import coordinator

pytestmark = pytest.mark.slow
KEY = "pubview-status-key-8c1f"
AUTH = {"Authorization": f"Bearer {KEY}"}
WAIT_S = 30.0
"""The figures come within one reading (EVERY_S 10 s, timeout 3 s) of the status being read."""


def read(srv: Server) -> tuple[float, dict[str, Any]]:
    t0 = time.monotonic()
    r = httpx.get(srv.url + STATUS_PATH, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return time.monotonic() - t0, r.json()


def until(srv: Server, check: Callable[[ServeStatus], bool], what: str) -> tuple[ServeStatus, dict[str, Any]]:
    """Read the status as a dashboard does (twice a second) until `check`; each read is quick."""
    deadline = time.monotonic() + WAIT_S
    while True:
        took, body = read(srv)
        assert took < 2.0, f"a status read took {took:.1f} s: it waited on the coordinator"
        status = ServeStatus.model_validate(body)
        if check(status):
            return status, body
        assert time.monotonic() < deadline, f"{what}: not within {WAIT_S} s; last {status.public}"
        time.sleep(0.5)


def no_secret(body: dict[str, Any], home: Path) -> None:
    seed = (home / "identity" / "node.key").read_bytes()
    text = str(body)
    for secret in (KEY, b64.encode(seed), seed.hex()):
        assert secret not in text


@contextmanager
def page_on(port: int, served: Served, earned: int) -> Iterator[None]:
    """A contribute's page app (its real code) on a real socket, with a ledger line it earned."""
    async def ask() -> Credits:
        return Credits(account="w", balance=earned, held=0, holds=[], entries=[
            LineView(id=1, at=1.0, kind="settle", amount=earned, counterparty="r", hold_id=None)])

    server = uvicorn.Server(uvicorn.Config(page_app(served, Earnings(ask), "worker-node"), host="127.0.0.1",
                                           port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="worker-page")
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the page did not start"
            time.sleep(0.05)
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_servers_account_the_swarm_and_contributing_then_the_coordinator_stops(tmp_path: Path) -> None:
    page = free_port()
    (tmp_path / "serve").mkdir()
    with coordinator(tmp_path / "coord") as c, page_on(page, Served(finished=4, accepted=5), 700):
        srv = start_server(tmp_path / "serve", "--radius", "public", "--yes", HEARTH_COORDINATOR=c.url,
                           HEARTH_API_KEY=KEY, HEARTH_WORKER_PAGE_PORT=str(page))
        try:
            up, body = until(srv, lambda s: s.public.connected and s.public.contributing, "connected")
            account = NodeIdentity.load_or_create(tmp_path / "serve").node_id
            with c.ledger() as ledger:
                assert up.public.balance == ledger.balance(account) > 0  # its welcome, asked as the server
            assert up.public.held == 0 and up.public.swarm_workers == 0 and up.public.swarm_queued == 0
            assert up.public.checked_at is not None and up.public.problem is None
            assert (up.public.jobs_served, up.public.earned) == (4, 700)
            assert up.public.coordinator == c.url and up.public.enabled
            no_secret(body, tmp_path / "serve")
            c.proc.terminate()
            c.proc.wait(15)
            down, body = until(srv, lambda s: not s.public.connected, "not connected")
            assert down.public.balance == up.public.balance and down.public.checked_at == up.public.checked_at
            assert down.public.problem and "127.0.0.1" not in down.public.problem
            assert down.public.contributing  # the page still answers
            for _ in range(3):
                took, _ = read(srv)
                assert took < 1.0
        finally:
            stop_server(srv)


def test_junk_for_a_coordinator_and_a_worker_page_is_ignored_never_a_500(tmp_path: Path) -> None:
    with junk_server() as junk:
        srv = start_server(tmp_path, "--radius", "public", "--yes", HEARTH_COORDINATOR=junk.url,
                           HEARTH_API_KEY=KEY, HEARTH_WORKER_PAGE_PORT=str(junk.port))
        try:
            for mode in ("wrong_types", "huge_undeclared", "slow"):  # every mode: test_public_watch.py
                junk.mode, junk.asked[:] = mode, []
                deadline = time.monotonic() + WAIT_S
                while not {"/served.json", "/v1/swarm"} <= set(junk.asked) and mode != "slow":
                    took, body = read(srv)
                    assert took < 2.0 and time.monotonic() < deadline, mode
                    time.sleep(0.5)
                took, body = read(srv)
                status = ServeStatus.model_validate(body)
                assert took < 2.0 and not status.public.connected and not status.public.contributing, mode
                assert status.public.balance is None and status.public.swarm_workers is None, mode
        finally:
            stop_server(srv)


def test_a_server_not_public_names_its_coordinator_and_reads_no_account(tmp_path: Path) -> None:
    """The dashboard's consent question names status.public.coordinator: set while not public too."""
    with junk_server() as junk:
        srv = start_server(tmp_path, HEARTH_COORDINATOR=junk.url + "/", HEARTH_API_KEY=KEY,
                           HEARTH_WORKER_PAGE_PORT="0")
        try:
            for _ in range(3):
                _, body = read(srv)
                time.sleep(0.3)
            status = ServeStatus.model_validate(body)
        finally:
            stop_server(srv)
    assert status.radius != "public" and not status.public.enabled and status.public.coordinator == junk.url
    assert junk.asked == []  # not public, no page port: nothing asked of anyone
