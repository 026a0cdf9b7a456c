"""Random JSON at the HTTP routes: every answer is a success or an OpenAI-shaped 4xx, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server

pytestmark = pytest.mark.slow

# Lone surrogates included: JSON can carry them, and they are not text (issue 8, item 10).
TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "robot", 3]),
                                 "content": st.one_of(st.text(max_size=30), JSON)})
KEYS = {
    "/v1/chat/completions": {"model": st.sampled_from(["smollm2-135m", "nope", "", 5]),
                             "messages": st.one_of(st.lists(MESSAGE, max_size=3), JSON),
                             "temperature": JSON, "top_p": JSON, "seed": JSON, "stop": JSON, "stream": JSON,
                             "n": JSON, "max_tokens": JSON},
    "/v1/completions": {"model": st.sampled_from(["smollm2-135m", "nope"]), "prompt": st.one_of(st.text(max_size=30), JSON),
                        "stop": JSON, "stream": JSON, "max_tokens": JSON, "temperature": JSON},
    "/v1/embeddings": {"model": st.sampled_from(["smollm2-135m", "nope"]), "input": st.one_of(st.text(max_size=30), JSON),
                       "encoding_format": st.sampled_from(["float", "base64", "hex", None])},
    "/api/chat": {"model": st.sampled_from(["smollm2-135m", "nope", None]), "messages": st.one_of(st.lists(MESSAGE, max_size=2), JSON),
                  "stream": JSON, "options": JSON},
    "/api/generate": {"model": st.sampled_from(["smollm2-135m", None]), "prompt": st.one_of(st.text(max_size=30), JSON),
                      "system": JSON, "raw": JSON, "stream": JSON, "options": JSON},
}


VALID: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}]},
    "/v1/completions": {"model": "smollm2-135m", "prompt": "Hi"},
    "/v1/embeddings": {"model": "smollm2-135m", "input": "Hi"},
    "/api/chat": {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Hi"}], "stream": False},
    "/api/generate": {"model": "smollm2-135m", "prompt": "Hi", "stream": False},
}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Any]:
    """A valid body with some fields replaced by random values (or, sometimes, no object at all)."""
    route = draw(st.sampled_from(sorted(KEYS)))
    if draw(st.integers(0, 9)) == 0:
        return route, draw(JSON)
    fields = KEYS[route]
    body = dict(VALID[route])
    for key in draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=3)):
        body[key] = draw(fields[key])
    # Keep accepted requests short: a valid token limit is at most 2.
    if route.startswith("/api/"):
        options = body.get("options")
        body["options"] = {**options, "num_predict": 2} if isinstance(options, dict) else {"num_predict": 2}
    elif route != "/v1/embeddings":
        limit = body.get("max_tokens")
        body["max_tokens"] = max(-1, min(2, limit)) if isinstance(limit, int) and not isinstance(limit, bool) else (
            limit if draw(st.booleans()) and "max_tokens" in body else 2)
    return route, body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests())
def test_random_bodies_get_success_or_a_clear_4xx(server: Server, req: tuple[str, Any]) -> None:
    route, body = req
    r = httpx.post(server.url + route, content=json.dumps(body), headers={"content-type": "application/json"},
                   timeout=60)
    assert r.status_code in (200, 400, 404), (route, body, r.status_code, r.text)
    if r.status_code != 200:
        err = r.json()["error"]
        # Ollama's routes answer errors in Ollama's shape, the others in OpenAI's.
        message = err if route.startswith("/api/") else err["message"]
        assert isinstance(message, str) and message and "Traceback" not in r.text
