"""A real `hearth serve` with HEARTH_PARALLEL=4 and the real model: four greedy streams at once each
give their text alone, a client that leaves does not disturb the others, a newcomer's first token
arrives while others stream, beyond the slots requests wait, then get 429 with Retry-After, and a
request for another model waits for the streams to end (none is cut off), then the engine switches."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"
ASKS = [
    [{"role": "user", "content": "List the planets of the solar system."}],
    [{"role": "user", "content": "How is bread made?"}],
    [{"role": "user", "content": "Write a short poem about the sea."}],
    [{"role": "user", "content": "What is the capital of France?"}],
]
N = 32
# Greedy counting does not stop early: a stream that holds its slot until its reader leaves.
LONG = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 1500, "temperature": 0, "stream": True}


@pytest.fixture(scope="module")
def srv(models_home: Path) -> Iterator[Server]:
    server = start_server(models_home, HEARTH_PARALLEL="4", HEARTH_MAX_QUEUE="1", HEARTH_N_THREADS="1")
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(srv: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base, api_key="unused-on-loopback", max_retries=0, timeout=120)


def streamed(client: openai.OpenAI, messages: list[dict[str, str]], n: int = N) -> str:
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=n,  # type: ignore[arg-type]
                                            temperature=0, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


class Holder(threading.Thread):
    """A long stream holding a slot: `chunks` counts what it read; it leaves when told (`leave`)."""

    def __init__(self, srv: Server) -> None:
        super().__init__()
        self.srv, self.chunks, self.last = srv, 0, 0.0
        self.leave, self.code = threading.Event(), 0

    def run(self) -> None:
        with httpx.stream("POST", self.srv.base + "/completions", json=LONG, timeout=120) as r:
            self.code = r.status_code
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    assert "error" not in json.loads(line[6:]), line
                    self.chunks += 1
                    self.last = time.monotonic()
                if self.leave.is_set():
                    return  # closing the response cancels the generation

    def streaming(self) -> bool:
        return self.chunks >= 3 and self.is_alive()


def until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.02)


def holding(srv: Server, n: int) -> list[Holder]:
    holders = [Holder(srv) for _ in range(n)]
    for h in holders:
        h.start()
    until(lambda: all(h.streaming() for h in holders), f"{n} streams")
    return holders


def release(holders: list[Holder]) -> None:
    for h in holders:
        h.leave.set()
    for h in holders:
        h.join(60)


def test_four_streams_at_once_each_give_their_text_alone(srv: Server, client: openai.OpenAI) -> None:
    alone = [streamed(client, m) for m in ASKS]
    status = srv.status()
    assert status["slots"] == 4 and status["active"] == 0 and not status["busy"]
    together: list[Any] = [None] * 4

    def one(i: int) -> None:
        together[i] = streamed(client, ASKS[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(alone) and together == alone


def test_a_client_that_leaves_mid_stream_leaves_the_others_alone(srv: Server, client: openai.OpenAI) -> None:
    alone = [streamed(client, m) for m in ASKS[:2]]
    holder = Holder(srv)
    holder.start()
    until(holder.streaming, "the stream that will leave")
    texts: list[Any] = [None, None]

    def one(i: int) -> None:
        texts[i] = streamed(client, ASKS[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    until(lambda: srv.status()["active"] == 3, "three requests running")
    release([holder])  # it leaves while the other two stream
    for t in threads:
        t.join(120)
    assert texts == alone
    until(lambda: not srv.status()["busy"], "the slots to free")


def test_a_newcomer_gets_its_first_token_while_others_stream(srv: Server, client: openai.OpenAI) -> None:
    holders = holding(srv, 3)
    try:
        t0 = time.monotonic()
        stream = client.chat.completions.create(model=MODEL, messages=ASKS[3], max_tokens=N,  # type: ignore[arg-type]
                                                temperature=0, stream=True)
        first = next(c for c in stream if c.choices and c.choices[0].delta.content)
        ttft = time.monotonic() - t0
        assert first.choices[0].delta.content
        assert srv.status()["active"] == 4
        stream.close()
        before = [h.chunks for h in holders]
        time.sleep(0.5)
        assert all(h.chunks > b for h, b in zip(holders, before, strict=True)), "the others stopped streaming"
        assert ttft < 10, f"the newcomer waited {ttft:.1f} s for its first token"
    finally:
        release(holders)


def test_beyond_the_slots_requests_wait_then_get_429_with_retry_after(srv: Server) -> None:
    holders = holding(srv, 4)
    waited: list[int] = []
    short = {"model": MODEL, "messages": ASKS[3], "max_tokens": 2, "temperature": 0}
    waiter = threading.Thread(target=lambda: waited.append(
        httpx.post(srv.base + "/chat/completions", json=short, timeout=120).status_code))
    try:
        waiter.start()
        until(lambda: srv.status()["waiting"] == 1, "the fifth request to wait")
        status = srv.status()
        assert status["active"] == 4 and status["slots"] == 4
        refused = httpx.post(srv.base + "/chat/completions", json=short, timeout=60)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "queue_full"
        assert refused.headers["Retry-After"] == "2"
        assert "HEARTH_PARALLEL" in refused.json()["error"]["message"]
    finally:
        release(holders[:1])  # one slot frees: the waiter runs
        waiter.join(120)
        release(holders[1:])
    assert waited == [200] and all(h.code == 200 for h in holders)


def test_another_model_waits_for_the_streams_then_the_engine_switches(srv: Server) -> None:
    """Last here: it leaves gemma3 loaded. The stream on smollm2 is never cut off to switch."""
    holders = holding(srv, 2)
    other: list[httpx.Response] = []
    ask = {"model": "gemma3-270m", "messages": ASKS[3], "max_tokens": 4, "temperature": 0}
    switcher = threading.Thread(target=lambda: other.append(
        httpx.post(srv.base + "/chat/completions", json=ask, timeout=180)))
    try:
        switcher.start()
        until(lambda: srv.status()["waiting"] == 1, "the other model's request to wait")
        before = [h.chunks for h in holders]
        time.sleep(0.5)
        assert all(h.chunks > b for h, b in zip(holders, before, strict=True)), "a stream was cut off"
        assert srv.status()["model"] == MODEL and srv.status()["active"] == 2
    finally:
        release(holders)
        switcher.join(180)
    assert other and other[0].status_code == 200, other
    assert other[0].json()["choices"][0]["message"]["content"]
    assert srv.status()["model"] == "gemma3-270m" and all(h.code == 200 for h in holders)
