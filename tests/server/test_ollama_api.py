"""Ollama's API through the official `ollama` client and litellm's `ollama_chat/` provider, against
a real `hearth serve` with the real model: show, ps, load and unload, embed, pull (from a local
HTTP server standing in for the hub), delete, copy, generate with `suffix`, options; and a 400 or
404 in Ollama's {"error": "..."} shape for bad input on every route."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from hearth.models.catalogue import CATALOGUE
from hearth.models.pull import resolve
from hearth.models.store import ModelStore
from tests.conftest import N_CTX, Server, start_server, stop_server
from tests.engine.fim_gguf import write_fim_copy
from tests.models.httpfixture import Files, file_server

pytestmark = pytest.mark.slow
MODEL, FIM_MODEL, PULLED = "smollm2-135m", "smollm2-fim", "llama3.2-3b"
PREFIX, SUFFIX = "def add(a, b):\n    ", "\n    return c\n"
FAKE_GGUF = b"GGUF" + os.urandom(2 * 1024 * 1024)
HI = [{"role": "user", "content": "Say hi"}]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Its own home (pull, copy and delete change the store): smollm2, a copy of it whose GGUF names
    FIM tokens, and a hub on loopback serving a stand-in file for a catalogue model."""
    home = tmp_path_factory.mktemp("ollama-home")
    store = ModelStore(home / "models")
    _, path = resolve(store, MODEL)
    fim = write_fim_copy(path, store.partial / "smollm2-fim.gguf")
    stored = store.add_blob(fim, move=True)
    store.write_manifest(FIM_MODEL, [stored], "test:fim-copy")
    entry = CATALOGUE[PULLED]
    files = Files({f"/{entry.hf_repo}/resolve/main/{entry.files[0]}": FAKE_GGUF})
    with file_server(files) as hub:
        server = start_server(home, HEARTH_HF_ENDPOINT=hub, HEARTH_PARALLEL="1")
        yield server
        stop_server(server)


@pytest.fixture(scope="module")
def client(srv: Server) -> ollama.Client:
    return ollama.Client(host=srv.url, timeout=120)


def test_head_and_version(srv: Server) -> None:
    assert httpx.head(srv.url + "/").status_code == 200
    assert httpx.get(srv.url + "/api/version").json()["version"]


def test_show(client: ollama.Client) -> None:
    shown = client.show(MODEL)
    assert shown.capabilities == ["completion", "embedding"]  # no FIM tokens, no tools in its template
    assert shown.modelinfo is not None and shown.modelinfo["llama.context_length"] == 8192
    assert shown.modelinfo["general.architecture"] == "llama" and shown.modelinfo["tokenizer.ggml.tokens"] is None
    assert shown.details is not None and shown.details.quantization_level == "Q4_1"
    assert shown.details.family == "llama" and shown.details.parameter_size == "134.5M"
    assert f"num_ctx {N_CTX}" in (shown.parameters or "") and "FROM " in (shown.modelfile or "")
    assert "<|im_start|>" in (shown.template or "")
    assert "insert" in (client.show(FIM_MODEL).capabilities or [])
    with pytest.raises(ollama.ResponseError) as info:
        client.show("no-such-model")
    assert info.value.status_code == 404


def test_load_ps_and_unload(client: ollama.Client) -> None:
    loaded = client.generate(model=MODEL)  # empty prompt: load
    assert loaded.done and loaded.done_reason == "load" and loaded.response == ""
    [running] = client.ps().models
    assert running.model == MODEL and running.context_length == N_CTX and (running.size or 0) > 50_000_000
    assert running.expires_at is not None and running.expires_at.year > 2100  # kept until replaced
    gone = client.generate(model=MODEL, keep_alive=0)
    assert gone.done_reason == "unload" and client.ps().models == []
    assert client.chat(model=MODEL, messages=[]).done_reason == "load"
    assert client.chat(model=MODEL, messages=[], keep_alive="1s").done_reason == "load"
    [running] = client.ps().models
    assert running.expires_at is not None and running.expires_at.year < 2100
    deadline = time.monotonic() + 20
    while client.ps().models and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.ps().models == []  # unloaded a second after
    assert client.chat(model=MODEL, messages=[], keep_alive=-1).done_reason == "load"
    # keep_alive 0 on a real request: the reply first, then the model is unloaded
    said = client.generate(model=MODEL, prompt="Hi", keep_alive=0, options={"num_predict": 2})
    assert said.eval_count == 2 and said.response
    deadline = time.monotonic() + 20
    while client.ps().models and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.ps().models == []


def test_embed_and_legacy_embeddings(client: ollama.Client, srv: Server) -> None:
    both = client.embed(model=MODEL, input=["Glass is made by heating sand.", "bees"])
    assert len(both.embeddings) == 2 and len(both.embeddings[0]) == 576 and (both.prompt_eval_count or 0) > 3
    assert math.isclose(sum(x * x for x in both.embeddings[0]), 1.0, rel_tol=1e-6)
    one = client.embed(model=MODEL, input="Glass is made by heating sand.", dimensions=64)
    head = both.embeddings[0][:64]
    norm = math.sqrt(sum(x * x for x in head))
    assert len(one.embeddings[0]) == 64
    assert all(math.isclose(a, b / norm, abs_tol=1e-6) for a, b in zip(one.embeddings[0], head, strict=True))
    legacy = client.embeddings(model=MODEL, prompt="bees")
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(legacy.embedding, both.embeddings[1], strict=True))
    assert client.embed(model=MODEL, input=[]).embeddings == []  # Ollama's load idiom
    long = "word " * 700  # past the 512 tokens the engine embeds at once
    assert len(client.embed(model=MODEL, input=long).embeddings[0]) == 576  # truncated by default
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model=MODEL, input=long, truncate=False)
    assert info.value.status_code == 400 and "512" in info.value.error


def test_openai_embeddings_by_token_ids_and_dimensions(srv: Server) -> None:
    oa = openai.OpenAI(base_url=srv.base, api_key="unused", max_retries=0, timeout=120)
    text = oa.embeddings.create(model=MODEL, input=["Say hi", "bees"]).data
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(ModelStore(srv.home / "models").model_path(MODEL)), vocab_only=True,
                            verbose=False)
    ids = [vocab.tokenize(t.encode(), add_bos=True, special=False) for t in ("Say hi", "bees")]
    vocab.close()
    by_ids = oa.embeddings.create(model=MODEL, input=ids).data  # as langchain's OpenAIEmbeddings sends
    one = oa.embeddings.create(model=MODEL, input=ids[0]).data
    for a, b in zip([*text, text[0]], [*by_ids, *one], strict=True):
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding, strict=True)) < 1e-6
    short = oa.embeddings.create(model=MODEL, input="Say hi", dimensions=32).data[0].embedding
    assert len(short) == 32 and math.isclose(sum(x * x for x in short), 1.0, rel_tol=1e-6)
    for bad in ({"input": [[1, 2], [10**6]]}, {"input": "x", "dimensions": 10_000}, {"input": [[]]}):
        with pytest.raises(openai.BadRequestError):
            oa.embeddings.create(model=MODEL, **bad)  # type: ignore[arg-type]


def fim_prompt_tokens(srv: Server) -> int:
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(ModelStore(srv.home / "models").model_path(FIM_MODEL)),
                            vocab_only=True, verbose=False)
    try:
        n = sum(len(vocab.tokenize(t.encode(), add_bos=False, special=False)) for t in (PREFIX, SUFFIX))
    finally:
        vocab.close()
    return n + 3  # <fim_pre> ... <fim_suf> ... <fim_mid>; smollm2 adds no BOS


def test_fill_in_the_middle(client: ollama.Client, srv: Server) -> None:
    expected = fim_prompt_tokens(srv)
    r = client.generate(model=FIM_MODEL, prompt=PREFIX, suffix=SUFFIX, options={"num_predict": 4, "temperature": 0})
    assert r.done and r.prompt_eval_count == expected and r.eval_count == 4
    oa = openai.OpenAI(base_url=srv.base, api_key="unused", max_retries=0, timeout=120)
    c = oa.completions.create(model=FIM_MODEL, prompt=PREFIX, suffix=SUFFIX, max_tokens=4, temperature=0)
    assert c.usage is not None and c.usage.prompt_tokens == expected and c.choices[0].text == r.response
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model=MODEL, prompt=PREFIX, suffix=SUFFIX)
    assert info.value.status_code == 400 and "fill-in-the-middle" in info.value.error
    with pytest.raises(openai.BadRequestError, match="fill-in-the-middle"):
        oa.completions.create(model=MODEL, prompt=PREFIX, suffix=SUFFIX, max_tokens=4)


def test_chat_options(client: ollama.Client) -> None:
    opts: dict[str, Any] = {"num_predict": 6, "temperature": 0, "seed": 7, "top_k": 40, "top_p": 0.9,
                            "num_ctx": 1024, "repeat_penalty": 1.0, "stop": ["zzz"]}
    a = client.chat(model=MODEL, messages=HI, options=opts)
    assert a.message.content and a.eval_count == 6 and a.done_reason == "length"
    greedy = client.chat(model=MODEL, messages=HI, options={"num_predict": 6, "top_k": 1, "temperature": 1.5})
    assert greedy.message.content == a.message.content  # top_k 1 is greedy, whatever the temperature
    stopped = client.chat(model=MODEL, messages=HI, options={"num_predict": 12, "temperature": 0,
                                                            "stop": [a.message.content[2:5]]})
    assert a.message.content[2:5] not in (stopped.message.content or "") and (stopped.eval_count or 0) < 12
    for bad, name in [({"top_k": 5}, "top_k"), ({"repeat_penalty": 1.1}, "repeat_penalty"),
                      ({"mirostat": 2}, "mirostat"), ({"num_ctx": 10**6}, "num_ctx")]:
        with pytest.raises(ollama.ResponseError) as info:
            client.chat(model=MODEL, messages=HI, options=bad)
        assert info.value.status_code == 400 and name in info.value.error


def test_pull_copy_delete(client: ollama.Client) -> None:
    lines = list(client.pull(PULLED, stream=True))
    statuses = [p.status for p in lines]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success" and "writing manifest" in statuses
    progress = [p for p in lines if p.total]
    assert progress and progress[-1].completed == progress[-1].total == len(FAKE_GGUF)
    assert any(p.digest and p.digest.startswith("sha256:") for p in lines)
    assert client.pull(PULLED, stream=False).status == "success"  # again: already stored
    assert client.copy(PULLED, "my-copy").status == "success"
    names = {m.model for m in client.list().models}
    assert {PULLED, "my-copy"} <= names
    assert client.delete("my-copy").status == "success" and client.delete(PULLED).status == "success"
    assert not {PULLED, "my-copy"} & {m.model for m in client.list().models}
    for call in (lambda: client.delete(PULLED), lambda: client.copy("no-such-model", "x"),
                 lambda: client.pull("no-such-model")):
        with pytest.raises(ollama.ResponseError) as info:
            call()
        assert info.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as info:
        client.copy(MODEL, "Bad/Name")
    assert info.value.status_code == 400 and "destination" in info.value.error


@pytest.fixture(scope="module")
def litellm_replies(srv: Server) -> tuple[Any, list[str]]:
    """A whole reply and a streamed one through litellm's ollama_chat provider. Made in a module
    fixture: litellm keeps a worker thread for its logging callbacks, which the per-test thread
    check would otherwise count as leaked."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network for its price list
    import litellm

    common: dict[str, Any] = {"model": f"ollama_chat/{MODEL}", "api_base": srv.url, "messages": HI,
                              "max_tokens": 6, "temperature": 0}
    whole = litellm.completion(**common)
    parts = [c.choices[0].delta.content or "" for c in litellm.completion(**common, stream=True)]
    return whole, parts


def test_litellm_ollama_chat(litellm_replies: tuple[Any, list[str]]) -> None:
    whole, parts = litellm_replies
    text = whole.choices[0].message.content
    assert text and whole.usage.completion_tokens == 6
    assert "".join(parts) == text and len([p for p in parts if p]) > 1


BAD = [
    ("POST", "/api/show", {}, 400, "model"),
    ("POST", "/api/show", {"model": "m", "extra": 1}, 400, "extra"),
    ("POST", "/api/embed", {"model": MODEL}, 400, "input"),
    ("POST", "/api/embed", {"model": MODEL, "input": 5}, 400, "input"),
    ("POST", "/api/embed", {"model": MODEL, "input": "x", "dimensions": 0}, 400, "dimensions"),
    ("POST", "/api/embed", {"model": MODEL, "input": "x", "dimensions": 5000}, 400, "dimensions"),
    ("POST", "/api/embed", {"model": MODEL, "input": "x", "options": {"top_k": 3}}, 400, "top_k"),
    ("POST", "/api/embed", {"model": "no-such-model", "input": "x"}, 404, "no-such-model"),
    ("POST", "/api/embeddings", {"model": MODEL, "prompt": 5}, 400, "prompt"),
    ("POST", "/api/pull", {}, 400, "model"),
    ("POST", "/api/pull", {"model": MODEL, "stream": "maybe"}, 400, "stream"),
    ("DELETE", "/api/delete", {}, 400, "model"),
    ("POST", "/api/copy", {"source": MODEL}, 400, "destination"),
    ("POST", "/api/generate", {"model": MODEL, "keep_alive": "soon"}, 400, "keep_alive"),
    ("POST", "/api/generate", {"model": MODEL, "prompt": "x", "suffix": 3}, 400, "suffix"),
    ("POST", "/api/generate", {"model": "no-such-model", "prompt": "x"}, 404, "no-such-model"),
    ("POST", "/api/generate", {"model": FIM_MODEL, "prompt": "x", "suffix": "y", "system": "z"}, 400, "system"),
    ("POST", "/api/embeddings", {"model": MODEL, "prompt": "x", "options": {"seed": 1}}, 400, "seed"),
    ("POST", "/api/chat", {"model": MODEL, "messages": [], "keep_alive": [1]}, 400, "keep_alive"),
    ("POST", "/api/chat", {"model": MODEL, "messages": HI, "options": {"num_gpu": 1}}, 400, "num_gpu"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "named"), BAD)
def test_bad_input_is_refused_in_ollamas_shape(srv: Server, method: str, path: str, body: dict[str, Any],
                                               status: int, named: str) -> None:
    r = httpx.request(method, srv.url + path, json=body, timeout=120)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert isinstance(error, str) and named in error
