"""Verified-only requests (issue 11): `verified_only` in a /v1/jobs body or `X-Hearth-Verified-Only: 1`
reaches the queued job (only trusted workers may claim it), a malformed header is a 400 that writes
nothing, and HEARTH_VERIFIED_ONLY=1 makes hearth's own requester send the header."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from nacl.signing import SigningKey

from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator.dispatch_rules import JobSpec
from hearth.public_swarm.requester import PublicRequester
from tests.public_swarm.dispatch_kit import MODEL
from tests.public_swarm.jobs_http_kit import books
from tests.public_swarm.jobs_kit import node, snapshot

CHAT = {"model": MODEL.name, "messages": [{"role": "user", "content": "Why is the sky blue?"}], "max_tokens": 16}


def test_the_body_and_the_header_ask_for_verified_workers(tmp_path: Path) -> None:
    async def go() -> None:
        with books(f"sqlite:///{tmp_path / 'jobs.db'}") as b:
            async with b.anonymous("192.0.2.10") as me:
                plain = (await me.post("/v1/jobs", json=CHAT)).json()
                by_body = (await me.post("/v1/jobs", json={**CHAT, "verified_only": True})).json()
                by_header = (await me.post("/v1/jobs", json=CHAT, headers={"X-Hearth-Verified-Only": "1"})).json()
                before = snapshot(b.queue)
                for bad in ({"json": {**CHAT, "verified_only": "yes please"}},
                            {"json": CHAT, "headers": {"X-Hearth-Verified-Only": "maybe"}}):
                    r = await me.post("/v1/jobs", **bad)  # type: ignore[arg-type]
                    assert r.status_code in (400, 422), r.text
                assert snapshot(b.queue) == before
            flags = {name: b.queue.get(job["id"]) for name, job in
                     (("plain", plain), ("body", by_body), ("header", by_header))}
            assert {k: v.verified_only for k, v in flags.items() if v} == {"plain": False, "body": True, "header": True}
            assert JobSpec.from_json(flags["body"].request).verified_only  # type: ignore[union-attr]
            # an untrusted worker cannot claim them; a trusted one can
            first = b.queue.claim(node(100), [MODEL.digest], owner="192.0.2.0/24")
            assert first is not None and first.id == plain["id"]
            assert b.queue.claim(node(100), [MODEL.digest], owner="192.0.2.0/24") is None
            assert b.queue.claim(node(101), [MODEL.digest], owner="198.51.100.0/24", trusted=True) is not None

    asyncio.run(go())


@pytest.mark.parametrize(("env", "sent"), [("1", "1"), ("0", None), (None, None)])
def test_hearth_verified_only_makes_the_requester_send_the_header(monkeypatch: pytest.MonkeyPatch,
                                                                  env: str | None, sent: str | None) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503, json={"error": {"message": "no worker", "type": "server_error",
                                                   "code": "no_worker"}})

    if env is None:
        monkeypatch.delenv("HEARTH_VERIFIED_ONLY", raising=False)
    else:
        monkeypatch.setenv("HEARTH_VERIFIED_ONLY", env)

    async def go() -> None:
        async with PublicRequester("http://coordinator.test", NodeIdentity(SigningKey(bytes([5]) * 32)),
                                   transport=httpx.MockTransport(answer)) as requester:
            with pytest.raises(Exception):  # noqa: B017 (the refusal's type is not what this tests)
                async for _ in requester.run(MODEL.name, "chat", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=4):
                    pass

    asyncio.run(go())
    assert seen and seen[0].headers.get("x-hearth-verified-only") == sent
