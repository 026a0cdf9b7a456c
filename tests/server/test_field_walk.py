"""Issue 14, item 1: nothing a client sends is silently ignored. Every field of OpenAI's request
schemas (the `openai` package's typed params) and Ollama's (the `ollama` package's request types)
is sent, alone, with a plausible value to a real `hearth serve`: it is honoured (2xx) or refused
with a 400 that names it.

The TABLES say which, field by field. Entries other helpers of issue 14 change at merge are marked
`# <helper>: honoured` (tools, ollama, lead); the lead flips them as their work lands. A field the
schemas gain in a newer client fails the walk until it has an entry here."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama._types as ollama_types
import pytest
from openai.types import completion_create_params, embedding_create_params
from openai.types.chat import ChatCompletionAssistantMessageParam, ChatCompletionUserMessageParam
from openai.types.chat import completion_create_params as chat_create_params

from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"
H, R = "honoured", "refused"
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
OLLAMA_TOOL = TOOL

# route -> field -> (value sent, expected); `messages.N.` and `options.` name nested fields.
CHAT: dict[str, tuple[Any, str]] = {
    "model": (MODEL, H), "messages": ([{"role": "user", "content": "Hi"}], H), "max_tokens": (2, H),
    "max_completion_tokens": (2, H), "temperature": (0.5, H), "top_p": (0.9, H), "seed": (7, H),
    "stop": (["\n"], H), "stream": (True, H), "stream_options": ({"include_usage": True}, H), "n": (1, H),
    "tools": ([TOOL], H),
    "tool_choice": ("auto", R),  # without tools: refused by name
    "parallel_tool_calls": (False, H),
    "response_format": ({"type": "json_object"}, H),
    "logprobs": (True, H), "top_logprobs": (2, H),  # sent with logprobs: true (ALONG)
    "audio": ({"voice": "alloy", "format": "wav"}, R), "frequency_penalty": (0.5, R), "function_call": ("auto", R),
    "functions": ([TOOL["function"]], R), "logit_bias": ({"50256": -100}, R), "metadata": ({"k": "v"}, R),
    "modalities": (["text"], R), "moderation": ({"type": "auto"}, R),
    "prediction": ({"type": "content", "content": "Hi"}, R), "presence_penalty": (0.5, R),
    "prompt_cache_key": ("k", R), "prompt_cache_options": ({"ttl": "5m"}, R), "prompt_cache_retention": ("24h", R),
    "reasoning_effort": ("low", R), "safety_identifier": ("u1", R), "service_tier": ("auto", R), "store": (True, R),
    "user": ("u1", R), "verbosity": ("low", R), "web_search_options": ({"search_context_size": "low"}, R),
    "messages.0.name": ("ann", H),
    "messages.1.refusal": ("no", R), "messages.1.name": ("bot", H), "messages.1.audio": ({"id": "a1"}, R),
    "messages.1.tool_calls": ([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}], H),
    "messages.1.function_call": ({"name": "f", "arguments": "{}"}, R),
}
COMPLETIONS: dict[str, tuple[Any, str]] = {
    "model": (MODEL, H), "prompt": ("Hi", H), "max_tokens": (2, H), "temperature": (0.5, H), "top_p": (0.9, H),
    "seed": (7, H), "stop": (["\n"], H), "stream": (True, H), "stream_options": ({"include_usage": True}, H),
    "n": (1, H),
    "suffix": (" world", R),  # refused by name for smollm2, whose GGUF has no FIM tokens
    "echo": (True, H), "logprobs": (2, H),
    "best_of": (2, R), "frequency_penalty": (0.5, R), "presence_penalty": (0.5, R),
    "logit_bias": ({"50256": -100}, R), "user": ("u1", R),
}
EMBEDDINGS: dict[str, tuple[Any, str]] = {
    "model": (MODEL, H), "input": ("Hi", H), "encoding_format": ("base64", H),
    "dimensions": (8, H),
    "user": ("u1", R),
}
OLLAMA_OPTIONS: dict[str, tuple[Any, str]] = {
    "temperature": (0.5, H), "top_p": (0.9, H), "seed": (7, H), "num_predict": (2, H), "stop": (["\n"], H),
    "num_ctx": (256, H), "top_k": (40, H), "repeat_penalty": (1.1, R),  # only 1.0: no penalty in the chain
    "embedding_only": (True, R), "f16_kv": (True, R), "frequency_penalty": (0.5, R), "logits_all": (True, R),
    "low_vram": (True, R), "main_gpu": (0, R), "mirostat": (1, R), "mirostat_eta": (0.1, R),
    "mirostat_tau": (5.0, R), "num_batch": (512, R), "num_gpu": (0, R), "num_keep": (4, R), "num_thread": (2, R),
    "numa": (True, R), "penalize_newline": (True, R), "presence_penalty": (0.5, R), "repeat_last_n": (64, R),
    "tfs_z": (1.0, R), "typical_p": (1.0, R), "use_mlock": (True, R), "use_mmap": (True, R), "vocab_only": (True, R),
}
OLLAMA_CHAT: dict[str, tuple[Any, str]] = {
    "model": (MODEL, H), "messages": ([{"role": "user", "content": "Hi"}], H), "stream": (True, H),
    "options": ({"temperature": 0.5, "num_predict": 2}, H),
    "tools": ([OLLAMA_TOOL], H), "format": ("json", H),
    "keep_alive": ("5m", H),
    "logprobs": (True, R), "top_logprobs": (2, R),  # lead: honoured (if Ollama's are added)
    "think": (True, R),
    "messages.0.images": (["iVBORw0KGgo="], R), "messages.1.thinking": ("hmm", R),
    "messages.1.tool_calls": ([{"function": {"name": "f", "arguments": {}}}], H),
    "messages.1.tool_name": ("f", H),
}
OLLAMA_GENERATE: dict[str, tuple[Any, str]] = {
    "model": (MODEL, H), "prompt": ("Hi", H), "stream": (True, H), "system": ("Be brief.", H), "raw": (True, H),
    "options": ({"temperature": 0.5, "num_predict": 2}, H),
    "suffix": (" world", R),  # refused by name for smollm2 (no FIM tokens)
    "format": ("json", H),
    "keep_alive": ("5m", H),
    "logprobs": (True, R), "top_logprobs": (2, R),  # lead: honoured (if Ollama's are added)
    "context": ([1, 2, 3], R), "images": (["iVBORw0KGgo="], R), "template": ("{{ .Prompt }}", R),
    "think": (True, R), "width": (64, R), "height": (64, R), "steps": (4, R),
} | {f"options.{k}": v for k, v in OLLAMA_OPTIONS.items()}

BASE: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": MODEL, "max_tokens": 2, "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]},
    "/v1/completions": {"model": MODEL, "prompt": "Hi", "max_tokens": 2},
    "/v1/embeddings": {"model": MODEL, "input": "Hi"},
    "/api/chat": {"model": MODEL, "stream": False, "options": {"num_predict": 2}, "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]},
    "/api/generate": {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}},
}
# Fields a walked field needs beside it to be meaningful.
ALONG: dict[tuple[str, str], dict[str, Any]] = {("/v1/chat/completions", "top_logprobs"): {"logprobs": True},
                                              ("/v1/chat/completions", "stream_options"): {"stream": True},
                                              ("/v1/completions", "stream_options"): {"stream": True}}
TABLES = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETIONS, "/v1/embeddings": EMBEDDINGS,
          "/api/chat": OLLAMA_CHAT, "/api/generate": OLLAMA_GENERATE}


def _typed(cls: Any) -> set[str]:
    return set(typing.get_type_hints(cls))


def _pydantic(cls: Any) -> set[str]:
    return set(cls.model_fields)


# The schemas walked: each route's fields as the official clients define them.
SCHEMAS: dict[str, set[str]] = {
    "/v1/chat/completions": (_typed(chat_create_params.CompletionCreateParamsBase) | {"stream"}
                             | {f"messages.0.{f}" for f in _typed(ChatCompletionUserMessageParam) - {"role", "content"}}
                             | {f"messages.1.{f}" for f in _typed(ChatCompletionAssistantMessageParam) - {"role", "content"}}),
    "/v1/completions": _typed(completion_create_params.CompletionCreateParamsBase) | {"stream"},
    "/v1/embeddings": _typed(embedding_create_params.EmbeddingCreateParams),
    "/api/chat": (_pydantic(ollama_types.ChatRequest)
                  | {f"messages.0.{f}" for f in {"images"}}
                  | {f"messages.1.{f}" for f in _pydantic(ollama_types.Message) - {"role", "content", "images"}}),
    "/api/generate": (_pydantic(ollama_types.GenerateRequest)
                      | {f"options.{f}" for f in _pydantic(ollama_types.Options)}),
}


@pytest.mark.parametrize("route", sorted(TABLES))
def test_every_field_of_the_clients_schemas_has_an_entry(route: str) -> None:
    missing = SCHEMAS[route] - set(TABLES[route])
    assert not missing, f"{route}: fields of the official client's schema with no entry in the table: {sorted(missing)}"


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `body` with `value` at `path` ('stop', 'messages.1.name', 'options.top_k')."""
    body = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    at: Any = body
    for part in parents:
        at = at[int(part)] if isinstance(at, list) else at.setdefault(part, {})
    at[last] = value
    return body


def _cases() -> Iterator[Any]:
    for route, table in sorted(TABLES.items()):
        for field, (value, expected) in sorted(table.items()):
            yield pytest.param(route, field, value, expected, id=f"{route}:{field}")


@pytest.fixture(scope="module")
def walked(models_home: Path) -> Iterator[Server]:
    srv = start_server(models_home, HEARTH_N_CTX="512")
    yield srv
    stop_server(srv)


@pytest.mark.parametrize("route, field, value, expected", list(_cases()))
def test_each_field_is_honoured_or_refused_by_name(walked: Server, route: str, field: str, value: Any,
                                                   expected: str) -> None:
    body = _with(BASE[route], field, value) | ALONG.get((route, field), {})
    r = httpx.post(walked.url + route, json=body, timeout=120)
    if expected == H:
        assert 200 <= r.status_code < 300, (route, field, r.status_code, r.text[:500])
        assert '"error"' not in r.text[:2000], r.text[:500]  # streamed replies carry errors in-band
        return
    assert r.status_code == 400, (route, field, r.status_code, r.text[:500])
    error = r.json()["error"]
    message = error if route.startswith("/api/") else error["message"]
    assert f"'{field}'" in message, message
    if not route.startswith("/api/"):
        assert error["param"] == field and error["type"] == "invalid_request_error"
