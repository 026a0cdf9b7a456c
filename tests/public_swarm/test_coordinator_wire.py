"""The coordinator's pure parts: parse_credits, the registration's bounds, and the client's error
mapping (an httpx.MockTransport stands in for answers a real coordinator never gives)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey
from pydantic import ValidationError

from hearth.errors import HearthError, InvalidRequest
from hearth.identity import NodeIdentity
from hearth.public_swarm.coordinator.client import (
    CoordinatorAnswerInvalid,
    CoordinatorClient,
    CoordinatorRefused,
    CoordinatorUnreachable,
)
from hearth.public_swarm.coordinator.wire import MAX_MODELS, WorkerRegistration, parse_credits
from hearth.public_swarm.ledger.errors import InsufficientCredits
from hearth.public_swarm.ledger.rules import MICRO, format_credits


@given(st.integers(min_value=1, max_value=10**15 - 1))
def test_parse_credits_reads_back_what_format_credits_writes(micro: int) -> None:
    assert parse_credits(format_credits(micro)) == micro


@given(st.text(max_size=30))
def test_parse_credits_refuses_or_reads_exactly(text: str) -> None:
    try:
        micro = parse_credits(text)
    except InvalidRequest:
        return
    assert 1 <= micro < 10**9 * MICRO


def _model(i: int) -> dict[str, object]:
    return {"digest": f"{i:064x}", "name": f"m{i}", "n_params": 10**9, "quantization": "q8_0", "n_ctx": 2048,
            "decode_tps": 3}


def _worker(models: list[dict[str, object]], **hardware: object) -> dict[str, object]:
    return {"name": "den", "models": models, "hardware": {"cpu": "arm", "cores": 4, "memory_bytes": 8 << 30, **hardware}}


def test_registration_bounds() -> None:
    ok = WorkerRegistration.model_validate(_worker([_model(1)]))
    assert ok.models[0].quantization == "Q8_0" and ok.models[0].decode_tps == 3.0
    for bad in (_worker([]), _worker([_model(i) for i in range(MAX_MODELS + 1)]), _worker([_model(1), _model(1)]),
                _worker([{**_model(1), "quantization": "Q9_Z"}]), _worker([{**_model(1), "n_params": True}]),
                _worker([{**_model(1), "digest": "AB" * 32}]), _worker([{**_model(1), "name": "a\nb"}]),
                _worker([{**_model(1), "name": "\ud800"}]), _worker([_model(1)], cores="4"),
                _worker([{**_model(1), "decode_tps": float("inf")}]), _worker([_model(1)], memory_bytes=1 << 60)):
        with pytest.raises(ValidationError):
            WorkerRegistration.model_validate(bad)


def _answer(status: int, body: bytes) -> HearthError:
    identity = NodeIdentity(SigningKey.generate())

    async def go() -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
        async with CoordinatorClient("http://127.0.0.1:1", identity, transport=transport) as client:
            await client.credits()

    with pytest.raises(HearthError) as caught:
        asyncio.run(go())
    return caught.value


def _error(code: str) -> bytes:
    return json.dumps({"error": {"message": "no", "type": "x", "param": None, "code": code}}).encode()


def test_the_client_maps_every_answer_to_a_hearth_error() -> None:
    assert isinstance(_answer(402, _error("insufficient_credits")), InsufficientCredits)
    refused = _answer(409, _error("something_new"))
    assert isinstance(refused, CoordinatorRefused) and refused.remote_code == "something_new"
    assert isinstance(_answer(500, b"<html>"), CoordinatorAnswerInvalid)
    assert isinstance(_answer(200, b'{"balance": "lots"}'), CoordinatorAnswerInvalid)
    assert isinstance(_answer(200, b"x" * (5 * 1024 * 1024)), CoordinatorAnswerInvalid)

    async def nothing_there() -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        transport = httpx.MockTransport(refuse)
        async with CoordinatorClient("http://127.0.0.1:1", NodeIdentity(SigningKey.generate()),
                                     transport=transport) as client:
            await client.credits()

    with pytest.raises(CoordinatorUnreachable):
        asyncio.run(nothing_there())


def test_a_rate_limit_and_a_job_cap_come_back_as_typed_429s() -> None:
    """What the jobs CLI gets for them: the error class (429, its own exit code and hint), and for a
    rate limit the answer's Retry-After (bounded; junk falls back to 1 s)."""
    from hearth.public_swarm.coordinator.client import refusal
    from hearth.public_swarm.coordinator.ratelimit_rules import RateLimited, TooManyJobs

    def body(code: str) -> bytes:
        return json.dumps({"error": {"message": "slow down", "code": code}}).encode()

    capped = refusal(429, body("too_many_jobs"), "POST /v1/jobs")
    assert isinstance(capped, TooManyJobs) and capped.http_status == 429
    for header, wait in (("7", 7), (None, 1), ("soon", 1), ("999999", 3600), ("0", 1)):
        limited = refusal(429, body("rate_limited"), "GET /v1/jobs", retry_after=header)
        assert isinstance(limited, RateLimited) and limited.retry_after == wait, header
