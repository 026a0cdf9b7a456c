"""The engine child decoding several requests at once (--parallel 4), through EngineProcess as the
server uses it: texts equal to alone, cancelling one, a latecomer served while others stream, a
score and a resumed reply in the same batch."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hearth.engine.events import Done, Scored, Start, Token
from hearth.engine.supervisor import EngineConfig, EngineProcess

pytestmark = pytest.mark.slow
GREEDY = {"temperature": 0.0, "top_p": 1.0, "seed": 1, "stop": []}
ASKS = {
    "planets": [{"role": "user", "content": "List the planets of the solar system."}],
    "bread": [{"role": "user", "content": "How is bread made?"}],
    "sea": [{"role": "user", "content": "Write a short poem about the sea."}],
    "paris": [{"role": "user", "content": "What is the capital of France?"}],
}
N = 24


async def reply(engine: EngineProcess, messages: Any, n: int = N, **extra: Any) -> tuple[str, list[int], Done]:
    text, ids, done = [], [], None
    async for ev in engine.request("chat", messages=messages, max_tokens=n, **GREEDY, **extra):
        if isinstance(ev, Token):
            text.append(ev.text)
            ids.extend(ev.ids)
        elif isinstance(ev, Done):
            done = ev
    assert done is not None
    return "".join(text), ids, done


def test_four_requests_at_once_each_match_their_text_alone(smollm2_path: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = EngineProcess(EngineConfig("smollm2-135m", smollm2_path, 1024, 1, tmp_path / "engine.log",
                                            parallel=4))
        await engine.start()
        try:
            assert engine.parallel == 4 and engine.n_ctx == 1024
            alone = {k: await reply(engine, m) for k, m in ASKS.items()}
            together = dict(zip(ASKS, await asyncio.gather(*(reply(engine, m) for m in ASKS.values())),
                                strict=True))
            for key in ASKS:
                assert alone[key][0] and together[key][0] == alone[key][0], key
                assert together[key][1] == alone[key][1]
                assert together[key][2].completion_tokens == alone[key][2].completion_tokens

            # Cancel one mid-stream (its reader leaves): the others go on unchanged.
            async def leave_after(messages: Any, tokens: int) -> int:
                events = engine.request("chat", messages=messages, max_tokens=200, **GREEDY)
                got = 0
                async for ev in events:
                    got += isinstance(ev, Token)
                    if got == tokens:
                        break
                await events.aclose()
                return got

            others = [k for k in ASKS if k != "bread"]
            results = await asyncio.gather(leave_after(ASKS["bread"], 3), *(reply(engine, ASKS[k]) for k in others))
            assert results[0] == 3
            for key, res in zip(others, results[1:], strict=True):
                assert res[0] == alone[key][0], key

            # A latecomer's first token arrives while the others still stream.
            order: list[str] = []

            async def tagged(key: str, n: int, delay: float) -> None:
                await asyncio.sleep(delay)
                async for ev in engine.request("chat", messages=ASKS[key], max_tokens=n, **GREEDY):
                    if isinstance(ev, Token) and ev.ids:
                        order.append(key)
            await asyncio.gather(tagged("planets", 60, 0), tagged("sea", 60, 0), tagged("paris", 4, 0.5))
            first_late = order.index("paris")
            assert "planets" in order[first_late:] and "sea" in order[first_late:]

            # A score and a resumed reply in the batch with a streaming one.
            text, ids, _ = alone["planets"]
            scored: list[Any] = []

            async def score() -> None:
                async for ev in engine.request("score", messages=ASKS["planets"], token_ids=ids, top_k=8):
                    if isinstance(ev, Scored):
                        scored.append(ev)

            resumed, stream, _ = await asyncio.gather(
                reply(engine, ASKS["planets"], resume=ids[:5], resumed_text=""),
                reply(engine, ASKS["sea"]), score())
            assert scored and scored[0].ranks == (0,) * len(ids) and scored[0].text == text
            assert resumed[0] == text and resumed[2].completion_tokens == alone["planets"][2].completion_tokens
            assert stream[0] == alone["sea"][0]
        finally:
            await engine.stop()

    asyncio.run(scenario())


def test_requests_beyond_the_slots_wait_in_order_in_the_child(smollm2_path: Path, tmp_path: Path) -> None:
    """Two slots, three requests: the third starts only when one of the first two ends."""
    async def scenario() -> None:
        engine = EngineProcess(EngineConfig("smollm2-135m", smollm2_path, 512, 1, tmp_path / "engine.log",
                                            parallel=2))
        await engine.start()
        try:
            log: list[tuple[str, str]] = []

            async def run(key: str, n: int) -> None:
                async for ev in engine.request("chat", messages=ASKS[key], max_tokens=n, **GREEDY):
                    if isinstance(ev, Start | Done):
                        log.append((key, type(ev).__name__))
            await asyncio.gather(run("planets", 20), run("sea", 8), run("paris", 4))
            assert log.index(("paris", "Start")) > log.index(("sea", "Done"))
            assert log.index(("sea", "Start")) < log.index(("planets", "Done"))
        finally:
            await engine.stop()

    asyncio.run(scenario())


def test_an_embed_request_pauses_the_streams_one_group_at_a_time(smollm2_path: Path, tmp_path: Path) -> None:
    """Embeddings run between decode steps, one group of inputs per step: a stream goes on while
    a long embed request is served, and both finish whole."""
    from hearth.engine.events import Embedding, Vectors

    async def scenario() -> None:
        engine = EngineProcess(EngineConfig("smollm2-135m", smollm2_path, 512, 1, tmp_path / "engine.log",
                                            parallel=2))
        await engine.start()
        try:
            order: list[str] = []

            async def stream() -> None:
                async for ev in engine.request("chat", messages=ASKS["sea"], max_tokens=60, **GREEDY):
                    if isinstance(ev, Token) and ev.ids:
                        order.append("token")

            async def embed() -> int:
                await asyncio.sleep(0.3)
                n = 0
                async for ev in engine.request("embed", input=[f"line {i} of a poem" for i in range(48)]):
                    if isinstance(ev, Vectors):
                        order.append("vectors")
                        n += len(ev.data)
                    assert not isinstance(ev, Embedding) or ev.prompt_tokens > 48
                return n
            _, n = await asyncio.gather(stream(), embed())
            assert n == 48
            first, last = order.index("vectors"), len(order) - 1 - order[::-1].index("vectors")
            assert "token" in order[first:last], "the stream stood still while the inputs were embedded"
            assert order.count("token") >= 50
        finally:
            await engine.stop()

    asyncio.run(scenario())
