"""The control client reads another process's answers: whatever comes back, a HearthError or a
value, never another exception. (httpx.MockTransport stands in for the server: the answers
tried here are ones a real `hearth serve` never sends.)"""

from __future__ import annotations

import asyncio
import json

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.errors import HearthError
from hearth.tui.client import DashAnswerInvalid
from hearth.tui.control_client import ControlClient, ControlRefused, LoadProgress


def call(status: int, body: bytes, what: str) -> object:
    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    async def main() -> object:
        async with ControlClient("http://127.0.0.1:1", transport=httpx.MockTransport(answer)) as c:
            seen: list[LoadProgress] = []
            if what == "load":
                return await c.load("m", seen.append)
            if what == "price":
                return await c.max_price(5)
            return await c.radius("machine")

    return asyncio.run(main())


@settings(max_examples=150, deadline=None)
@given(status=st.sampled_from([200, 400, 403, 404, 409, 500, 502]),
       body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.lists(st.dictionaries(st.sampled_from(["status", "fraction", "model", "error", "phase"]),
                                               st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=9),
                                                         st.sampled_from(["progress", "loaded", "error"])),
                                               max_size=4), max_size=5)
                      .map(lambda lines: "\n".join(json.dumps(x) for x in lines).encode())),
       what=st.sampled_from(["load", "price", "radius"]))
def test_any_answer_is_a_value_or_a_hearth_error(status: int, body: bytes, what: str) -> None:
    try:
        call(status, body, what)
    except HearthError as exc:
        assert exc.message


def test_refusals_carry_the_servers_message() -> None:
    body = json.dumps({"error": {"message": "radius 'x': choose 'machine'", "code": "invalid_request"}}).encode()
    try:
        call(400, body, "radius")
    except ControlRefused as exc:
        assert exc.message == "radius 'x': choose 'machine'" and exc.status == 400
    else:
        raise AssertionError("no refusal")
    lines = b'{"status": "started"}\n{"status": "progress", "phase": "pull", "fraction": 0.5}\n{"status": "loaded", "model": "m"}\n'
    assert call(200, lines, "load") == "m"
    try:
        call(200, b"<html>", "load")
    except DashAnswerInvalid:
        pass
    else:
        raise AssertionError("html was read as an answer")
