"""The official openai client against a real `hearth serve` with the real engine and model."""

from __future__ import annotations

import base64
import json
import os
import signal
import struct
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import N_CTX, Server

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"
ASK = [{"role": "user", "content": "What is the capital of France?"}]
# Greedy counting does not stop early: a generation that holds the engine for ~40 s.
LONG = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "max_tokens": 1500, "temperature": 0, "stream": True}


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base, api_key="unused-on-loopback", max_retries=0, timeout=120)


def greedy_chat(client: openai.OpenAI, messages: list[dict[str, str]] = ASK, n: int = 24) -> str:
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=n,  # type: ignore[arg-type]
                                       temperature=0)
    return r.choices[0].message.content or ""


def test_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list().data}
    assert {"smollm2-135m", "gemma3-270m"} <= ids
    assert client.models.retrieve("smollm2-135m").id == "smollm2-135m"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_and_usage(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=16, temperature=0)  # type: ignore[arg-type]
    assert r.object == "chat.completion" and r.model == MODEL
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage is not None and 0 < r.usage.completion_tokens <= 16 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_matches_non_streaming(client: openai.OpenAI) -> None:
    whole = greedy_chat(client)
    stream = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=24, temperature=0,  # type: ignore[arg-type]
                                            stream=True, stream_options={"include_usage": True})
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert "".join(parts) == whole
    assert finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens > 0


def test_greedy_is_identical_twice_and_to_llama_cpp_python(client: openai.OpenAI, smollm2_path: Path) -> None:
    via_hearth = greedy_chat(client, n=32)
    assert greedy_chat(client, n=32) == via_hearth
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(smollm2_path), n_ctx=N_CTX, n_threads=2, flash_attn=True, verbose=False)
    try:
        direct = llm.create_chat_completion(messages=ASK, max_tokens=32, temperature=0)  # type: ignore[arg-type]
    finally:
        llm.close()
    assert direct["choices"][0]["message"]["content"] == via_hearth  # type: ignore[index]


def test_completions_streaming_and_not(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=12, temperature=0)
    text = r.choices[0].text
    assert text and r.usage is not None and r.usage.completion_tokens == 12
    parts = [c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=12, temperature=0, stream=True) if c.choices]
    assert "".join(parts) == text


def test_stop_sequences_and_seeded_sampling(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=30, temperature=0, stop=[" 7"])
    assert " 7" not in r.choices[0].text and r.choices[0].finish_reason == "stop"
    a = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=16, temperature=1.0, seed=42)
    b = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=16, temperature=1.0, seed=42)
    assert a.choices[0].text == b.choices[0].text


def test_embeddings_float_and_base64(client: openai.OpenAI, server: Server) -> None:
    e = client.embeddings.create(model=MODEL, input=["hello there", "general kenobi"], encoding_format="float")
    assert [d.index for d in e.data] == [0, 1]
    v0, v1 = e.data[0].embedding, e.data[1].embedding
    assert len(v0) == 576 and v0 != v1
    assert abs(sum(x * x for x in v0) - 1.0) < 1e-3  # normalised
    raw = httpx.post(server.base + "/embeddings", json={"model": MODEL, "input": "hello there",
                                                        "encoding_format": "base64"}, timeout=60).json()
    b64 = raw["data"][0]["embedding"]
    decoded = struct.unpack(f"<{len(v0)}f", base64.b64decode(b64))
    assert max(abs(a - b) for a, b in zip(decoded, v0, strict=True)) < 1e-6


def test_ollama_chat_streams_ndjson(server: Server, client: openai.OpenAI) -> None:
    expected = greedy_chat(client, n=16)
    body = {"model": MODEL, "messages": ASK, "options": {"temperature": 0, "num_predict": 16}}
    with httpx.stream("POST", server.url + "/api/chat", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] > 0
    assert all(not x["done"] for x in lines[:-1]) and len(lines) > 2
    assert "".join(x["message"]["content"] for x in lines) == expected


def test_ollama_generate_and_tags(server: Server) -> None:
    r = httpx.post(server.url + "/api/generate", json={"model": MODEL + ":latest", "prompt": "Say hi",
                                                       "stream": False, "options": {"num_predict": 5}}, timeout=60)
    assert r.status_code == 200 and r.json()["done"] is True and r.json()["eval_count"] == 5
    raw = httpx.post(server.url + "/api/generate", json={"model": MODEL, "prompt": "1, 2, 3,", "raw": True,
                                                         "stream": False, "options": {"num_predict": 4,
                                                                                      "temperature": 0}}, timeout=60)
    assert raw.json()["response"].strip()
    tags = httpx.get(server.url + "/api/tags").json()["models"]
    assert MODEL in {t["name"] for t in tags} and all(len(t["digest"]) == 64 for t in tags)


def test_chat_page_is_served_without_a_cdn(server: Server) -> None:
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "/v1/chat/completions" in r.text and MODEL in r.text
    assert "src=\"http" not in r.text and "href=\"http" not in r.text


# -- bad input --------------------------------------------------------------------------------
BAD_BODIES = [
    (b"{not json", {"content-type": "application/json"}, "not valid JSON"),
    (b"[1, 2]", {"content-type": "application/json"}, "must be a JSON object"),
    (json.dumps({"messages": "hi"}).encode(), {"content-type": "application/json"}, "'messages'"),
    (json.dumps({"messages": []}).encode(), {"content-type": "application/json"}, "'messages'"),
    (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), {"content-type": "application/json"}, "role"),
    (json.dumps({"messages": ASK, "temperature": "hot"}).encode(), {"content-type": "application/json"}, "'temperature'"),
    (json.dumps({"messages": ASK, "max_tokens": -1}).encode(), {"content-type": "application/json"}, "'max_tokens'"),
    (json.dumps({"messages": ASK, "n": 2}).encode(), {"content-type": "application/json"}, "'n'"),
    (json.dumps({"messages": ASK, "stop": ["a", "b", "c", "d", "e"]}).encode(), {"content-type": "application/json"}, "stop"),
    (json.dumps({"messages": ASK, "seed": -5}).encode(), {"content-type": "application/json"}, "'seed'"),
]


@pytest.mark.parametrize("body, headers, says", BAD_BODIES)
def test_malformed_requests_get_400_in_openai_shape(server: Server, body: bytes, headers: dict[str, str], says: str) -> None:
    r = httpx.post(server.base + "/chat/completions", content=body, headers=headers)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and says in err["message"]
    assert "Traceback" not in r.text


def test_openai_client_sees_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="gpt-9", messages=ASK)  # type: ignore[arg-type]
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 3000}])
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=-1)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input=[])


def test_ollama_routes_refuse_bad_input(server: Server) -> None:
    for body in ({"messages": ASK}, {"model": MODEL, "messages": "x"}, {"model": MODEL, "prompt": 5},
                 {"model": MODEL, "messages": ASK, "options": {"temperature": -1}}):
        route = "/api/generate" if "prompt" in body else "/api/chat"
        r = httpx.post(server.url + route, json=body)
        assert r.status_code == 400, (route, body, r.text)
    r = httpx.post(server.url + "/api/chat", json={"model": "nope", "messages": ASK})
    assert r.status_code == 404 and "nope" in r.json()["error"]  # Ollama's shape: {"error": "..."}
    assert httpx.get(server.url + "/no/such/route").status_code == 404


# -- the engine dies, clients leave, the queue fills ----------------------------------------------
def test_killing_the_engine_mid_stream_leaves_the_server_answering(server: Server, client: openai.OpenAI) -> None:
    expected = greedy_chat(client, n=16)
    restarts = int(server.status()["restarts"])  # type: ignore[call-overload]
    stream = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=400, temperature=0, stream=True)  # type: ignore[arg-type]
    seen = 0
    with pytest.raises(openai.APIError, match="engine process exited"):
        for _chunk in stream:
            seen += 1
            if seen == 4:
                pid = server.status()["engine_pid"]
                os.kill(int(pid), signal.SIGKILL)  # type: ignore[call-overload]
    assert greedy_chat(client, n=16) == expected
    status = server.status()
    assert status["restarts"] == restarts + 1 and status["engine_pid"] != pid


def test_a_client_that_disconnects_cancels_its_generation(server: Server, client: openai.OpenAI) -> None:
    greedy_chat(client, n=2)  # engine loaded
    with httpx.stream("POST", server.base + "/completions", json=LONG, timeout=60) as r:
        lines = r.iter_lines()
        for _ in range(6):
            next(lines)
        assert server.status()["busy"] is True
    # 1500 tokens take ~40 s here; a cancelled generation frees the engine at once.
    deadline = time.monotonic() + 10
    while server.status()["busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.status()["busy"] is False


def test_a_full_queue_answers_429(server: Server, client: openai.OpenAI) -> None:
    greedy_chat(client, n=2)
    waiter_result: list[int] = []
    with httpx.stream("POST", server.base + "/completions", json=LONG, timeout=60) as r:
        lines = r.iter_lines()  # keep a reference: a dropped iterator closes the response
        next(lines)  # the first request holds the engine
        short = {"model": MODEL, "messages": ASK, "max_tokens": 2}
        waiter = threading.Thread(target=lambda: waiter_result.append(
            httpx.post(server.base + "/chat/completions", json=short, timeout=60).status_code))
        waiter.start()
        deadline = time.monotonic() + 10
        while server.status()["waiting"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.status()["waiting"] == 1
        third = httpx.post(server.base + "/chat/completions", json=short, timeout=60)
        assert third.status_code == 429 and third.json()["error"]["code"] == "queue_full"
    waiter.join(60)
    assert waiter_result == [200]


def test_empty_inputs_are_refused_without_killing_the_engine(server: Server) -> None:
    """Found by test_fuzz_http: llama.cpp aborts its process on an empty batch."""
    httpx.post(server.base + "/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 1}, timeout=60)
    before = server.status()
    for route, body in (("/completions", {"model": MODEL, "prompt": ""}),
                        ("/embeddings", {"model": MODEL, "input": ""}),
                        ("/embeddings", {"model": MODEL, "input": ["ok", ""]})):
        r = httpx.post(server.base + route, json=body, timeout=60)
        assert r.status_code == 400, (route, body, r.text)
    after = server.status()
    assert after["engine_pid"] == before["engine_pid"] and after["restarts"] == before["restarts"]
