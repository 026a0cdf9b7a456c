"""What a request escalated to the public swarm carries, and what it refuses to drop silently."""

from __future__ import annotations

import pytest

from hearth.errors import InvalidRequest
from hearth.public_swarm.requester import request_body


def test_the_forwarded_fields_and_the_prompt_are_carried() -> None:
    body = request_body("m", "chat", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
                                      "temperature": 0.0, "stop": [], "seed": None, "exact": True})
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 5 and body["temperature"] == 0.0
    assert "stop" not in body and "seed" not in body and "exact" not in body


@pytest.mark.parametrize("field,value", [("grammar", "root ::= \"a\""), ("tools", [{"type": "function"}]),
                                         ("suffix", "}"), ("logprobs", 2), ("logprobs", 0), ("echo", True)])
def test_a_field_the_swarm_cannot_honour_is_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(InvalidRequest, match=f"{field} needs the circle"):
        request_body("m", "complete", {"prompt": "x", field: value})


@pytest.mark.parametrize("value", [None, False, "", [], {}])
def test_an_unset_field_is_no_reason_to_refuse(value: object) -> None:
    assert request_body("m", "complete", {"prompt": "x", "grammar": value})["prompt"] == "x"
