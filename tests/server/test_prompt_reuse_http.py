"""HEARTH_PROMPT_REUSE through a real `hearth serve` and the openai client: "tokens" lets a chat's
next turn skip its whole history, the earlier reply included (usage.prompt_tokens_details
.cached_tokens says how much, as llama-server's does); a request with a seed still reuses only
whole chunks computed as a fresh prompt's, and gets the fresh cache's text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"
CHUNK = 64
SYSTEM = {"role": "system", "content": "You are a careful assistant who answers about rivers. " * 8}


@pytest.fixture(scope="module")
def srv(models_home: Path) -> Iterator[Server]:
    server = start_server(models_home, HEARTH_PARALLEL="1", HEARTH_PROMPT_REUSE="tokens", HEARTH_N_THREADS="1")
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(srv: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base, api_key="unused-on-loopback", max_retries=0, timeout=120)


def ask(client: openai.OpenAI, messages: list[dict[str, str]], **kw: Any) -> tuple[str, int, int]:
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=12,  # type: ignore[arg-type]
                                       temperature=0, **kw)
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    return r.choices[0].message.content or "", r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens or 0


def test_a_chats_next_turn_reuses_its_history_and_a_seeded_request_stays_exact(client: openai.OpenAI) -> None:
    first = [SYSTEM, {"role": "user", "content": "Name a long river."}]
    reply, n_first, _ = ask(client, first)
    second = [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "And another?"}]
    _, n_second, cached = ask(client, second)
    assert cached > n_first - 2 and cached % CHUNK  # the first turn, and more: not whole chunks
    assert cached < n_second
    # A seed asks for the same text every time: only canonical whole chunks are reused.
    fresh_text, _, seeded_cached = ask(client, [SYSTEM, {"role": "user", "content": "Name a lake."}], seed=7)
    assert seeded_cached % CHUNK == 0
    again_text, _, again_cached = ask(client, [SYSTEM, {"role": "user", "content": "Name a lake."}], seed=7)
    assert again_cached % CHUNK == 0 and again_cached > 0 and again_text == fresh_text
