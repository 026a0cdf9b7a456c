"""logprobs, top_logprobs and echo through a real `hearth serve` and the official openai client:
chat (whole and streamed) and legacy completions, and the refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"
ASK = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def srv(models_home: Path) -> Iterator[Server]:
    server = start_server(models_home, HEARTH_PARALLEL="1", HEARTH_N_THREADS="1")
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def client(srv: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base, api_key="unused-on-loopback", max_retries=0, timeout=120)


def test_chat_logprobs_cover_every_token_and_greedy_takes_the_best(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12, temperature=0,  # type: ignore[arg-type]
                                       logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content if r.choices[0].logprobs else None
    assert content and r.usage is not None and len(content) == r.usage.completion_tokens
    assert "".join(c.token for c in content) == r.choices[0].message.content
    for c in content:
        assert c.logprob <= 0 and len(c.top_logprobs) == 2 and c.bytes == list(c.token.encode())
        assert c.logprob == c.top_logprobs[0].logprob >= c.top_logprobs[1].logprob
    plain = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == r.choices[0].message.content


def test_streamed_chat_logprobs_come_with_their_chunks(client: openai.OpenAI) -> None:
    text, tokens = "", []
    for chunk in client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=12,  # type: ignore[arg-type]
                                                temperature=0, logprobs=True, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
            assert chunk.choices[0].logprobs is not None and chunk.choices[0].logprobs.content
            tokens += [c.token for c in chunk.choices[0].logprobs.content]
            assert all(c.top_logprobs == [] for c in chunk.choices[0].logprobs.content)
    assert text and "".join(tokens) == text


def test_completion_logprobs_and_echo(client: openai.OpenAI) -> None:
    prompt = "The colours of the rainbow are"
    r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs and lp.text_offset
    assert "".join(lp.tokens) == r.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    assert all(len(top) <= 3 and max(top.values()) >= got for top, got in zip(lp.top_logprobs, lp.token_logprobs,
                                                                               strict=True))
    echoed = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0, echo=True)
    assert echoed.choices[0].text == prompt + r.choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=8, temperature=0, echo=True, stream=True) if c.choices)
    assert streamed == prompt + r.choices[0].text


@pytest.mark.parametrize("kind,kw,named", [
    ("chat", {"top_logprobs": 2}, "top_logprobs"),
    ("chat", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("completion", {"logprobs": 6}, "logprobs"),
    ("completion", {"logprobs": 1, "echo": True}, "echo"),
])
def test_bad_logprobs_requests_are_refused_by_name(client: openai.OpenAI, kind: str, kw: dict[str, object],
                                                   named: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        if kind == "chat":
            client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=2, **kw)  # type: ignore[arg-type, call-overload]
        else:
            client.completions.create(model=MODEL, prompt="x", max_tokens=2, **kw)  # type: ignore[call-overload]
    assert named in str(err.value)
