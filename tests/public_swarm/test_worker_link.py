"""Workers dial out (issue 10): a real `hearth coordinator` and real `hearth contribute` processes.

The worker appears live with its models (by the store's sha256) once it measured them, is unlinked
when killed -9, redials a restarted coordinator by itself, and stops cleanly on SIGTERM. Clients that
send junk, a forged Hello, an oversized frame or nothing are closed with the protocol's codes, a
client address past its link cap is refused, and the coordinator keeps serving throughout.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from pathlib import Path

import httpx
import pytest
import websockets
from nacl.signing import SigningKey
from websockets.asyncio.client import ClientConnection, connect

from hearth.identity import NodeIdentity
from hearth.models.store import ModelStore
from hearth.net import b64
from hearth.public_swarm.coordinator.links import HEARTBEAT_S, MAX_LINK_FRAME_BYTES, PER_CLIENT
from hearth.public_swarm.protocol import CloseCode, Send, WorkerSession, decode, encode
from hearth.public_swarm.protocol.coordinator import MISSED_HEARTBEATS
from hearth.public_swarm.protocol.messages import PROTOCOL_VERSION, Challenge, Hello, ModelOffer, Welcome
from hearth.settings import DEFAULT_MODEL
from tests.conftest import free_port
from tests.public_swarm.worker_proc import FIRST_LINK_S, contributor, coordinator_at, live, wait_for

pytestmark = pytest.mark.slow


def linked(url: str, me: NodeIdentity, node: str) -> bool:
    """Whether `node` is listed with its link up. A worker also registers its hardware over HTTP when
    it links, so after its link drops it stays listed (linked: false) for the registry's live window."""
    view = live(url, me).get(node)
    return view is not None and view.linked

"""A worker's first link waits for its model to be imported, loaded and its decode speed measured."""


def test_worker_links_is_live_with_its_models_and_leaves_when_killed(tmp_path: Path) -> None:
    port, me = free_port(), NodeIdentity.load_or_create(tmp_path / "asker")
    url = f"http://127.0.0.1:{port}"
    with coordinator_at(tmp_path / "coord", port), contributor(tmp_path / "w", url, "--max-jobs", "2") as worker:
        node = NodeIdentity.load_or_create(tmp_path / "w").node_id
        took = wait_for("worker listed live", lambda: node in live(url, me), FIRST_LINK_S, tmp_path / "w" / "contribute.log")
        view = live(url, me)[node]
        manifest = ModelStore(tmp_path / "w" / "models").get(DEFAULT_MODEL)
        assert manifest is not None
        # the hardware registration follows the link by a moment: absent, or this machine's
        assert view.linked and (view.hardware is None or view.hardware.cores == os.cpu_count())
        assert [(m.digest, m.name) for m in view.models] == [(manifest.digest, DEFAULT_MODEL)]
        assert view.models[0].credits_per_million_tokens >= 1
        print(f"worker live after {took:.1f} s (process start included)")
        worker.kill()
        gone = wait_for("killed worker unlinked", lambda: not linked(url, me, node),
                        MISSED_HEARTBEATS * HEARTBEAT_S + 2)
        print(f"killed worker gone after {gone:.1f} s")


def test_worker_redials_a_restarted_coordinator_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, me = free_port(), NodeIdentity.load_or_create(tmp_path / "asker")
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "w" / "contribute.log"
    with contributor(tmp_path / "w", url) as worker:
        node = NodeIdentity.load_or_create(tmp_path / "w").node_id
        with coordinator_at(tmp_path / "coord", port):  # the worker dialled before it was up
            wait_for("worker linked", lambda: node in live(url, me), FIRST_LINK_S, log)
        with coordinator_at(tmp_path / "coord", port):
            took = wait_for("worker linked again", lambda: node in live(url, me), 40, log)
            print(f"relinked {took:.1f} s after the coordinator answered")
        assert worker.poll() is None
        start = time.monotonic()
        worker.terminate()
        assert worker.wait(10) == 0
        print(f"worker stopped {time.monotonic() - start:.1f} s after SIGTERM")
    assert "redialling" in log.read_text()


async def _closed_with(ws_url: str, frames: list[str | bytes]) -> int | None:
    async with connect(ws_url, max_size=None, ping_interval=None) as ws:
        challenge = decode(await ws.recv())
        assert isinstance(challenge, Challenge)
        try:
            for f in frames:
                await ws.send(f)
            await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed:
            pass
        await asyncio.wait_for(ws.wait_closed(), 30)
        return ws.close_code


_OFFER = ModelOffer(digest="0" * 64, name="m", params=1_000_000, quant="Q8_0", n_ctx=64, decode_tps=1.0)


def _forged_hello() -> str:
    me, other = NodeIdentity(SigningKey.generate()), NodeIdentity(SigningKey.generate())
    return encode(Hello(v=PROTOCOL_VERSION, node_id=me.node_id, public_key=b64.encode(me.public_key),
                        signature=b64.encode(other.prove(secrets.token_bytes(32))), max_jobs=1,
                        models=[_OFFER]))


def test_bad_clients_are_closed_with_the_protocols_codes(tmp_path: Path) -> None:
    port, me = free_port(), NodeIdentity.load_or_create(tmp_path / "asker")
    url = f"http://127.0.0.1:{port}"
    ws_url = f"ws://127.0.0.1:{port}/v1/workers/link"

    async def main() -> None:
        junk, forged, silent, huge, binary = await asyncio.gather(
            _closed_with(ws_url, ["{not json"]),
            _closed_with(ws_url, [_forged_hello()]),
            _closed_with(ws_url, []),
            _closed_with(ws_url, ["x" * (MAX_LINK_FRAME_BYTES + 1)]),
            _closed_with(ws_url, [b"\xff\xfe"]))
        assert (junk, forged, silent, huge, binary) == (
            CloseCode.MALFORMED, CloseCode.FORGED_IDENTITY, CloseCode.TIMEOUT, 1009, CloseCode.MALFORMED)
        # past the per-address cap the upgrade itself is refused; closing one makes room again
        held = [await connect(ws_url, ping_interval=None) for _ in range(PER_CLIENT)]
        with pytest.raises(websockets.InvalidStatus):
            await connect(ws_url, ping_interval=None)
        await held.pop().close()
        await asyncio.sleep(0.3)
        held.append(await connect(ws_url, ping_interval=None))
        for ws in held:
            await ws.close()
        for _ in range(40):  # upgraded connections leave the HTTP per-address table (webserve.py)
            async with connect(ws_url, ping_interval=None) as ws:
                await ws.recv()

    with coordinator_at(tmp_path / "coord", port):
        asyncio.run(main())
        assert httpx.get(url + "/v1/prices", timeout=5).status_code == 200
        with contributor(tmp_path / "w", url):
            node = NodeIdentity.load_or_create(tmp_path / "w").node_id
            wait_for("the honest worker linked", lambda: node in live(url, me), FIRST_LINK_S, tmp_path / "w" / "contribute.log")
            assert list(live(url, me)) == [node]


def test_a_frozen_worker_is_taken_as_dead_after_three_silent_heartbeats(tmp_path: Path) -> None:
    """SIGSTOP keeps the worker's socket open but silences it: only the session's timer can tell."""
    port, me = free_port(), NodeIdentity.load_or_create(tmp_path / "asker")
    url = f"http://127.0.0.1:{port}"
    with coordinator_at(tmp_path / "coord", port), contributor(tmp_path / "w", url) as worker:
        node = NodeIdentity.load_or_create(tmp_path / "w").node_id
        wait_for("worker linked", lambda: node in live(url, me), FIRST_LINK_S, tmp_path / "w" / "contribute.log")
        worker.send_signal(signal.SIGSTOP)
        try:
            gone = wait_for("frozen worker unlinked", lambda: not linked(url, me, node),
                            MISSED_HEARTBEATS * HEARTBEAT_S + 3)
        finally:
            worker.send_signal(signal.SIGCONT)
        assert gone >= (MISSED_HEARTBEATS - 1) * HEARTBEAT_S
        print(f"frozen worker gone after {gone:.1f} s")
        back = wait_for("thawed worker linked again", lambda: node in live(url, me), 30,
                        tmp_path / "w" / "contribute.log")
        print(f"thawed worker relinked after {back:.1f} s")


async def _linked(ws_url: str, identity: NodeIdentity) -> ClientConnection:
    """A hand-driven worker: the real WorkerSession over a raw connection, up to the Welcome."""
    ws = await connect(ws_url, ping_interval=None)
    session = WorkerSession(identity, [_OFFER], 1, time.monotonic())
    for action in session.receive_text(await ws.recv(), time.monotonic()):
        assert isinstance(action, Send)
        await ws.send(encode(action.message))
    assert isinstance(decode(await ws.recv()), Welcome)
    return ws


def test_a_second_link_of_one_worker_replaces_the_first(tmp_path: Path) -> None:
    port, me = free_port(), NodeIdentity.load_or_create(tmp_path / "asker")
    url = f"http://127.0.0.1:{port}"
    ws_url = f"ws://127.0.0.1:{port}/v1/workers/link"
    worker = NodeIdentity(SigningKey.generate())

    async def main() -> None:
        first = await _linked(ws_url, worker)
        second = await _linked(ws_url, worker)
        await asyncio.wait_for(first.wait_closed(), 10)
        assert first.close_code == CloseCode.NORMAL
        listed = await asyncio.to_thread(live, url, me)
        assert list(listed) == [worker.node_id] and listed[worker.node_id].models[0].digest == _OFFER.digest
        await second.close()
        await asyncio.sleep(0.5)
        assert await asyncio.to_thread(live, url, me) == {}

    with coordinator_at(tmp_path / "coord", port):
        asyncio.run(main())
