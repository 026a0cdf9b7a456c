"""Spot-check verification with the real engine (issue 11): the engine's "score" op on SmolLM2-135M,
judged by hearth.public_swarm.verify. One engine, loaded once for the module, in this process (the
code the engine child runs); scripts/bench_verify.py measures the same on hundreds of prompts."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hearth.engine.events import Done, EngineEvent, Scored, Token
from hearth.engine.protocol import RequestError
from hearth.engine.score import score
from hearth.engine.worker import Engine
from hearth.public_swarm.verify import TOP_K, text_agrees, verdict

pytestmark = pytest.mark.slow

FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in a sentence."}]
COLOURS = [{"role": "user", "content": "Write a short poem about the sea."}]


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    e = Engine(str(smollm2_path), 1024, 1)
    yield e
    e.close()


def events(call: Any, engine: Engine, req: dict[str, Any]) -> list[EngineEvent]:
    out: list[EngineEvent] = []
    call(engine, req, threading.Event(), out.append)
    return out


def greedy(engine: Engine, messages: list[dict[str, str]], n: int = 16) -> tuple[list[int], str]:
    out: list[EngineEvent] = []
    engine.generate({"id": "g", "op": "chat", "messages": messages, "max_tokens": n, "temperature": 0.0},
                    threading.Event(), out.append)
    tokens = [e for e in out if isinstance(e, Token)]
    return [i for t in tokens for i in t.ids], "".join(t.text for t in tokens)


def scored(engine: Engine, messages: list[dict[str, str]], ids: list[int], top_k: int = TOP_K) -> Scored:
    out = events(score, engine, {"id": "s", "op": "score", "messages": messages, "token_ids": ids, "top_k": top_k})
    assert isinstance(out[-1], Done) and out[-1].completion_tokens == len(ids)
    [result] = [e for e in out if isinstance(e, Scored)]
    return result


def test_an_honest_greedy_output_scores_rank_0_and_passes(engine: Engine) -> None:
    ids, text = greedy(engine, FRANCE)
    s = scored(engine, FRANCE, ids)
    assert s.ranks == (0,) * len(ids) and s.gaps == (0.0,) * len(ids)
    assert verdict(s.ranks, s.gaps, top_k=TOP_K).ok
    assert s.text == text and text_agrees(s.text, text)


def test_random_ids_and_another_prompts_output_fail(engine: Engine) -> None:
    ids, _ = greedy(engine, COLOURS)
    other = scored(engine, FRANCE, ids)
    v = verdict(other.ranks, other.gaps, top_k=TOP_K)
    assert not v.ok and v.reason
    rng = random.Random(7)
    noise = scored(engine, FRANCE, [rng.randrange(engine.llm.n_vocab()) for _ in range(16)])
    assert not verdict(noise.ranks, noise.gaps, top_k=TOP_K).ok
    assert max(noise.ranks) == TOP_K  # capped: "not among the best top_k"


def test_rank_and_gap_of_a_token_that_is_not_the_greedy_choice(engine: Engine) -> None:
    prompt, _ = engine._chat_prompt(FRANCE)
    assert engine._evaluate(prompt, threading.Event())
    import llama_cpp

    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(engine.llm._ctx.ctx, -1),
                                   shape=(engine.llm.n_vocab(),)).copy()
    order = np.argsort(-logits, kind="stable")
    best, third = int(order[0]), int(order[2])
    s = scored(engine, FRANCE, [best, third])
    assert (s.ranks[0], s.gaps[0]) == (0, 0.0)
    first = scored(engine, FRANCE, [third])
    assert first.ranks == (2,) and first.gaps[0] == pytest.approx(float(logits[best] - logits[third]), abs=1e-3)
    assert scored(engine, FRANCE, [int(order[-1])], top_k=3).ranks == (3,)


def test_an_id_outside_the_vocabulary_is_an_invalid_request(engine: Engine) -> None:
    with pytest.raises(RequestError) as err:
        events(score, engine, {"id": "s", "op": "score", "prompt": "Hi", "token_ids": [10**7], "top_k": 8})
    assert err.value.code == "invalid_request"
