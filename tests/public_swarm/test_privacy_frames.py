"""Workers never learn who asked (issue 11, "Privacy and consent"): every frame a worker's link
receives, for a signed job and an unsigned (free-tier) one, holds neither the requester's node id,
its public key, its ledger account nor its address, and an Offer carries only the job id, the
model digest and the request (job ids are random, not derived from the requester). Once the
requester's reply was sent, the coordinator's row no longer holds the output text.

The worker is dispatch_live's scripted one, which keeps every frame it receives: what arrives on the link is the
coordinator's doing, and the scripted worker speaks the real protocol over a real WebSocket
(`hearth contribute` on a real model is exercised in test_worker_page_receipts)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from hearth.net import b64
from hearth.pairing.signed import SignedAuth
from hearth.public_swarm.coordinator.dispatch_rules import free_account
from hearth.public_swarm.coordinator.job_tables import jobs
from hearth.public_swarm.protocol.messages import Offer, decode
from tests.public_swarm.dispatch_kit import MODEL, Allowance
from tests.public_swarm.dispatch_live import TEXT, ScriptedWorker, coordinator, identity, ledger_of

pytestmark = pytest.mark.slow
ASKER = identity(21)
ADDRESS = "127.0.0.77"
"""The unsigned requester's own loopback address (Linux routes all of 127/8 to lo)."""
FORWARDED = "198.51.100.7"
SECRET = "my secret question about my neighbour"


def test_a_worker_sees_no_requester_and_the_coordinator_forgets_the_reply(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    body = {"model": MODEL.name, "messages": [{"role": "user", "content": SECRET}], "max_tokens": 16}

    async def main() -> list[str]:
        async with coordinator(tmp_path, url, allowance=Allowance(10_000)) as base:
            worker = await ScriptedWorker(identity(2)).start(base)
            try:
                async with httpx.AsyncClient(base_url=base, auth=SignedAuth(ASKER), timeout=60) as signed:
                    r = await signed.post("/v1/chat/completions", json=body, headers={"X-Forwarded-For": FORWARDED})
                    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == TEXT
                local = httpx.AsyncHTTPTransport(local_address=ADDRESS)
                async with httpx.AsyncClient(base_url=base, transport=local, timeout=60) as anon:
                    async with anon.stream("POST", "/v1/completions", json={
                            "model": MODEL.name, "prompt": SECRET, "max_tokens": 16, "stream": True}) as s:
                        assert s.status_code == 200 and "[DONE]" in "".join([x async for x in s.aiter_text()])
                await asyncio.sleep(0.3)
                return worker.frames
            finally:
                await worker.stop()

    frames = asyncio.run(main())
    offers = [m for m in map(decode, frames) if isinstance(m, Offer)]
    assert len(offers) == 2 and all(SECRET in f for f in frames if '"offer"' in f)
    secrets = [ASKER.node_id, b64.encode(ASKER.public_key), ADDRESS, free_account(ADDRESS), FORWARDED,
               free_account(FORWARDED), "127.0.0.1"]
    for frame in frames:
        for secret in secrets:
            assert secret not in frame, (secret, frame[:300])
    for offer, raw in zip(offers, (f for f in frames if '"offer"' in f), strict=True):
        assert set(json.loads(raw)) == {"type", "job_id", "model_digest", "request", "check"}
        assert len(offer.job_id) == 24 and int(offer.job_id, 16) >= 0  # secrets.token_hex(12): random
    with ledger_of(url) as ledger, ledger.engine.connect() as conn:
        rows = conn.execute(select(jobs.c.requester, jobs.c.text, jobs.c.state, jobs.c.tokens)).all()
    assert sorted(r.requester for r in rows) == sorted([ASKER.node_id, free_account(ADDRESS)])
    assert all(r.state == "done" and r.tokens == 8 and r.text == "" for r in rows), rows  # replies sent: forgotten
