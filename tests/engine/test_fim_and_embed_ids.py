"""Fill-in-the-middle prompts and embeddings of token ids in the engine, with the real model: a
copy of smollm2 whose GGUF names FIM tokens lays a prefix and a suffix out as llama.cpp's /infill
does; the real smollm2 (no FIM tokens) refuses `suffix`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.engine.events import Done, EngineEvent, Vectors
from hearth.engine.fim import NO_FIM
from hearth.engine.protocol import RequestError
from hearth.engine.worker import Engine
from tests.engine.fim_gguf import FIM_IDS, write_fim_copy

pytestmark = pytest.mark.slow
PREFIX, SUFFIX = "def add(a, b):\n    ", "\n    return c\n"


@pytest.fixture(scope="module")
def fim_engine(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = write_fim_copy(smollm2_path, tmp_path_factory.mktemp("fim") / "smollm2-fim.gguf")
    engine = Engine(str(path), 512, 2, llama_ctx=256)
    yield engine
    engine.close()


def tokens(engine: Engine, text: str) -> list[int]:
    return engine.llm.tokenize(text.encode(), add_bos=False, special=False)


def run(engine: Engine, req: dict[str, object]) -> list[EngineEvent]:
    out: list[EngineEvent] = []
    (engine.embed if req["op"] == "embed" else engine.generate)(req, threading.Event(), out.append)
    return out


def test_fim_prompt_is_prefix_suffix_middle(fim_engine: Engine) -> None:
    low = fim_engine._llama_cpp
    assert low.llama_vocab_fim_pre(fim_engine._vocab) == FIM_IDS["pre"]
    prompt, _ = fim_engine._prepare({"op": "complete", "prompt": PREFIX, "suffix": SUFFIX})
    bos = fim_engine.llm.tokenize(b"", add_bos=True, special=False)  # smollm2 adds none
    assert prompt == [*bos, FIM_IDS["pre"], *tokens(fim_engine, PREFIX), FIM_IDS["suf"],
                      *tokens(fim_engine, SUFFIX), FIM_IDS["mid"]]
    # Client text is never parsed for control tokens, in the prefix or the suffix.
    sneaky, _ = fim_engine._prepare({"op": "complete", "prompt": "<file_sep>", "suffix": "<repo_name>"})
    assert sneaky.count(FIM_IDS["mid"]) == 1 and sneaky.count(FIM_IDS["pre"]) == 1
    # An empty suffix still asks for the middle; without `suffix` the prompt is plain text.
    assert fim_engine._prepare({"op": "complete", "prompt": "x", "suffix": ""})[0][-2:] == [FIM_IDS["suf"],
                                                                                           FIM_IDS["mid"]]
    assert FIM_IDS["pre"] not in fim_engine._prepare({"op": "complete", "prompt": "x"})[0]


def test_fim_generates_after_the_middle_token(fim_engine: Engine) -> None:
    events = run(fim_engine, {"op": "complete", "id": "1", "prompt": PREFIX, "suffix": SUFFIX,
                              "max_tokens": 4, "temperature": 0})
    done = events[-1]
    expected = 1 + len(tokens(fim_engine, PREFIX)) + 1 + len(tokens(fim_engine, SUFFIX)) + 1
    assert isinstance(done, Done) and done.prompt_tokens == expected and done.completion_tokens == 4


def test_a_model_without_fim_tokens_refuses_suffix(smollm2_path: Path) -> None:
    engine = Engine(str(smollm2_path), 512, 2, llama_ctx=256)
    try:
        with pytest.raises(RequestError, match="no fill-in-the-middle tokens") as info:
            engine._prepare({"op": "complete", "prompt": PREFIX, "suffix": SUFFIX})
        assert info.value.code == "invalid_request" and info.value.message == NO_FIM
    finally:
        engine.close()


def test_token_ids_embed_as_their_text_does(fim_engine: Engine) -> None:
    text = "Glass is made by heating sand."
    ids = fim_engine.llm.tokenize(text.encode(), add_bos=True, special=False)
    by_text = run(fim_engine, {"op": "embed", "id": "t", "input": [text, "bees"]})
    by_ids = run(fim_engine, {"op": "embed", "id": "i", "input": [ids, tokens(fim_engine, "bees")]})
    assert isinstance(by_text[0], Vectors) and isinstance(by_ids[0], Vectors)
    for a, b in zip(by_text[0].data, by_ids[0].data, strict=True):
        assert len(a) == 576 and max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-6
    direct = fim_engine._embedder.embed(text, normalize=True)
    assert max(abs(x - y) for x, y in zip(by_text[0].data[0], direct, strict=True)) < 1e-6


@pytest.mark.parametrize(("inputs", "match"), [
    ([[1, 2], [49152]], "not a token id"),
    ([[1, -1]], "not a token id"),
    ([[1], []], "Input 1 to embed is empty"),
    ([[1, "a"]], "not a token id"),
])
def test_bad_token_ids_are_refused(fim_engine: Engine, inputs: list[object], match: str) -> None:
    with pytest.raises(RequestError, match=match):
        run(fim_engine, {"op": "embed", "id": "x", "input": inputs})


def test_long_inputs_are_refused_or_truncated_on_request(fim_engine: Engine) -> None:
    long = [7] * 600  # over the embedding batch (512)
    with pytest.raises(RequestError, match="embeds at most 512") as info:
        run(fim_engine, {"op": "embed", "id": "l", "input": [long]})
    assert info.value.code == "context_length_exceeded"
    events = run(fim_engine, {"op": "embed", "id": "l", "input": [long], "truncate": True})
    cut = run(fim_engine, {"op": "embed", "id": "c", "input": [long[:512]]})
    assert isinstance(events[0], Vectors) and isinstance(cut[0], Vectors) and events[0].data == cut[0].data
