"""Issue 14, item 10: /openapi.json declares the error responses the server really sends, and
schemathesis, run against that served schema on a real `hearth serve` with bounded examples, finds
no 5xx and no undocumented status code (it found 12 undocumented codes before)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from hearth.server.openapi import error_codes
from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.slow

EXAMPLES = 5  # per operation: bounded, the suite runs on two shared cores
ENDLESS = "/hearth/events"  # an event stream that stays open: it would hold a check forever
GENERATING = ("/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate")


@pytest.fixture(scope="module")
def fuzzed(models_home: Path) -> Iterator[Server]:
    # Small limits: a valid generated request cannot keep the engine busy for long (over them: a 400).
    srv = start_server(models_home, HEARTH_N_CTX="128", HEARTH_MAX_PROMPT_CHARS="400", HEARTH_MAX_EMBED_INPUTS="4")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def served_schema(fuzzed: Server) -> Any:
    return schemathesis.openapi.from_url(fuzzed.url + "/openapi.json")


# The exclusion goes on the lazy schema: it replaces the fixture schema's own filters when it
# parametrizes (schemathesis.pytest.lazy.get_schema), so an exclude there was lost.
schema = schemathesis.pytest.from_fixture("served_schema").exclude(path=ENDLESS)


def _bounded(case: Any) -> None:
    """At most two tokens per generated request; a limit already invalid is left to be refused."""
    body = case.body
    if case.path not in GENERATING or not isinstance(body, dict):
        return
    if case.path.startswith("/api/"):
        options = body.setdefault("options", {"num_predict": 2})
        if isinstance(options, dict):
            limit = options.get("num_predict")
            if limit is None or (type(limit) is int and (limit < 0 or limit > 2)):
                options["num_predict"] = 2
        return
    for name in ("max_tokens", "max_completion_tokens"):
        limit = body.get(name)
        if type(limit) is int and limit > 2:
            body[name] = 2
    body.setdefault("max_tokens", 2)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx_and_no_undocumented_status(case: Any) -> None:
    _bounded(case)
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance], timeout=120)


def test_the_schema_declares_errors_and_not_fastapis_422(fuzzed: Server) -> None:
    doc = httpx.get(fuzzed.url + "/openapi.json", timeout=30).json()
    responses = {(path, method): set(op["responses"]) for path, item in doc["paths"].items()
                 for method, op in item.items()}
    assert not [k for k, codes in responses.items() if "422" in codes]
    chat = responses[("/v1/chat/completions", "post")]
    assert {"200", "400", "401", "404", "413", "429", "503"} <= chat
    assert {"400", "404"} <= responses[("/api/generate", "post")]
    assert "404" in responses[("/v1/models/{model_id}", "get")]
    err = doc["paths"]["/api/chat"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert err == {"$ref": "#/components/schemas/OllamaError"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]


@pytest.mark.parametrize("path, method, query, codes", [
    ("/v1/models", "get", False, [401, 421]),
    ("/v1/models/{model_id}", "get", False, [401, 404, 421]),
    ("/hearth/events", "get", True, [400, 401, 421, 429]),
    ("/v1/chat/completions", "post", False, [400, 401, 402, 404, 413, 421, 429, 500, 502, 503]),
    ("/hearth/control/load", "post", False, [400, 401, 403, 404, 409, 413, 421, 500, 502, 503]),
])
def test_error_codes_rule(path: str, method: str, query: bool, codes: list[int]) -> None:
    assert error_codes(path, method, query) == codes
