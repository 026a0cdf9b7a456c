"""The pure parts of the Ollama API and embeddings: keep_alive durations, `dimensions`, /api/show's
capabilities, FIM layout, and the request models' refusals."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hearth.engine.fim import FimTokens, infill_tokens
from hearth.engine.protocol import RequestError
from hearth.errors import InvalidRequest
from hearth.server.durations import keep_alive_seconds
from hearth.server.ollama_schemas import CopyRequest, EmbedRequest, ShowRequest
from hearth.server.ollama_show import capabilities, size_label
from hearth.server.schemas import (
    CompletionRequest,
    EmbeddingRequest,
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaOptions,
)
from hearth.server.vectors import shorten


@pytest.mark.parametrize(("value", "seconds"), [
    ("5m", 300.0), ("1h30m", 5400.0), ("0", 0.0), (0, 0.0), ("0s", 0.0), (-1, math.inf), ("-1", math.inf),
    ("-1m", math.inf), (3.5, 3.5), ("250ms", 0.25), (None, None),
])
def test_keep_alive_durations(value: float | str | None, seconds: float | None) -> None:
    assert keep_alive_seconds(value) == seconds


@pytest.mark.parametrize("value", ["", "soon", "5x", "m5", "5 m", True, float("nan"), "1e999"])
def test_bad_keep_alive_is_refused(value: float | str) -> None:
    with pytest.raises(ValueError, match="keep_alive"):
        keep_alive_seconds(value)
    with pytest.raises(ValidationError, match="keep_alive"):
        OllamaGenerateRequest(model="m", prompt="x", keep_alive=value)


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=40), st.integers(1, 40))
def test_shortened_vectors_are_unit_length_prefixes(vector: list[float], dims: int) -> None:
    if dims > len(vector):
        with pytest.raises(InvalidRequest, match="dimensions"):
            shorten([vector], dims)
        return
    [out] = shorten([vector], dims)
    assert len(out) == dims
    norm = math.sqrt(sum(x * x for x in vector[:dims]))
    if norm > 1e-6:
        assert math.isclose(math.sqrt(sum(x * x for x in out)), 1.0, rel_tol=1e-9)
        assert all(math.isclose(o * norm, v, rel_tol=1e-9, abs_tol=1e-9) for o, v in zip(out, vector, strict=False))
    assert shorten([vector], None) == [vector]


def test_capabilities_follow_the_gguf() -> None:
    assert capabilities({}) == ["completion", "embedding"]
    fim = {"tokenizer.ggml.fim_pre_token_id": 1, "tokenizer.ggml.fim_suf_token_id": 2,
           "tokenizer.ggml.fim_mid_token_id": 3}
    assert "insert" in capabilities(fim)
    assert "insert" not in capabilities({"tokenizer.ggml.fim_pre_token_id": 1})
    assert "tools" in capabilities({"tokenizer.chat_template": "{% if tools %}...{% endif %}"})
    assert size_label(134_515_008) == "134.5M" and size_label(7_000_000_000) == "7B"


def test_fim_layout_and_refusal() -> None:
    fim = FimTokens.of(10, 11, 12)
    assert infill_tokens(fim, [1], [5, 6], [7]) == [1, 10, 5, 6, 11, 7, 12]
    assert infill_tokens(fim, [], [], []) == [10, 11, 12]
    with pytest.raises(RequestError, match="no fill-in-the-middle tokens"):
        FimTokens.of(10, -1, 12)


def test_ollama_options_honoured_or_refused_by_name() -> None:
    fields = OllamaOptions(top_k=1, temperature=0.7, num_predict=-1, num_ctx=512).engine_fields()
    assert fields["temperature"] == 0.0 and fields["max_tokens"] is None  # top-k 1 is greedy
    assert OllamaOptions(top_k=40, repeat_penalty=1.0).engine_fields()["temperature"] == 0.8
    for bad, name in [({"top_k": 3}, "top_k"), ({"repeat_penalty": 1.1}, "repeat_penalty"),
                      ({"mirostat": 1}, "mirostat"), ({"num_gpu": 1}, "num_gpu"), ({"num_ctx": 0}, "num_ctx")]:
        with pytest.raises(ValidationError, match=name):
            OllamaOptions(**bad)  # type: ignore[arg-type]


def test_load_idioms_parse() -> None:
    assert OllamaGenerateRequest(model="m").prompt == ""
    assert OllamaChatRequest(model="m").messages == []
    assert OllamaGenerateRequest(model="m", prompt="a", suffix="b").texts() == ["a", "", "b"]


def test_embedding_inputs() -> None:
    assert EmbeddingRequest(input="a").inputs() == ["a"]
    assert EmbeddingRequest(input=["a", "b"]).inputs() == ["a", "b"]
    assert EmbeddingRequest(input=[1, 2, 3]).inputs() == [[1, 2, 3]]
    assert EmbeddingRequest(input=[[1, 2], [3]]).inputs() == [[1, 2], [3]]
    assert EmbeddingRequest(input=[[1, 2], [3]]).texts() == []
    for bad in ([], [[]], [-1], [[1], ["a"]], [True], ""):
        with pytest.raises(ValidationError, match="input"):
            EmbeddingRequest(input=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="dimensions"):
        EmbeddingRequest(input="a", dimensions=0)


def test_ollama_model_requests() -> None:
    assert ShowRequest(name="m").model_name == "m"  # older clients send `name`
    with pytest.raises(ValidationError, match="model"):
        ShowRequest()
    with pytest.raises(ValidationError, match="surprise"):
        ShowRequest(model="m", surprise=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="destination"):
        CopyRequest(source="a")  # type: ignore[call-arg]
    assert EmbedRequest(model="m", input="x").truncate is True
    assert CompletionRequest(prompt="a", suffix="b").fim_fields() == {"suffix": "b"}
    assert CompletionRequest(prompt="a").fim_fields() == {}
