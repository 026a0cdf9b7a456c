"""`/hearth/status` and `/hearth/events` of a real `hearth serve` with the real model, an API key
set: what the dashboard reads after a real chat request, replay, bounds, and no secret in either."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.node_api.feed_sse import MAX_STREAMS_PER_CLIENT
from hearth.node_api.status import SERVE_EVENTS_PATH, STATUS_PATH, DashEvent, ServeStatus
from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.slow
KEY = "status-test-key-0d5e1c"
PROMPT = "Name one zebra-striped-walrus-91 colour."
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def srv(models_home: Path) -> Iterator[Server]:
    s = start_server(models_home, HEARTH_API_KEY=KEY)
    s.api_key = KEY
    try:
        yield s
    finally:
        stop_server(s)


def parse_sse(raw: str) -> list[DashEvent]:
    events = []
    for block in raw.split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            events.append(DashEvent.model_validate(json.loads(data[0])))
    return events


async def read_until(url: str, kind: str, headers: dict[str, str], seconds: float = 60) -> tuple[str, list[DashEvent]]:
    """The raw stream up to the first event of `kind` (or the time limit)."""
    raw = ""
    async with httpx.AsyncClient(timeout=seconds) as client, client.stream("GET", url, headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        async with asyncio.timeout(seconds):
            async for chunk in r.aiter_text():
                raw += chunk
                if any(e.kind == kind for e in parse_sse(raw)):
                    break
    return raw, parse_sse(raw)


def chat(srv: Server) -> dict[str, object]:
    r = httpx.post(srv.base + "/chat/completions", headers=AUTH, timeout=120, json={
        "model": "smollm2-135m", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8,
        "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_live_stream_carries_the_request_with_its_timings_and_status_lists_it(srv: Server) -> None:
    async def main() -> tuple[str, list[DashEvent], dict[str, object]]:
        reading = asyncio.create_task(read_until(srv.url + SERVE_EVENTS_PATH, "request_done", AUTH))
        await asyncio.sleep(0.5)
        reply = await asyncio.to_thread(chat, srv)
        raw, events = await reading
        return raw, events, reply

    raw, events, reply = asyncio.run(main())
    kinds = [e.kind for e in events]
    assert "request_started" in kinds and "request_done" in kinds, kinds
    done = next(e for e in events if e.kind == "request_done")
    assert done.data["tokens"] and float(done.data["ttft_ms"]) > 0  # type: ignore[arg-type]
    assert float(done.data["tokens_per_s"]) > 0  # type: ignore[arg-type]
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    text = reply["choices"][0]["message"]["content"]  # type: ignore[index]
    assert KEY not in raw and PROMPT not in raw and (not text or text not in raw)

    got = httpx.get(srv.url + STATUS_PATH, headers=AUTH, timeout=10)
    assert got.status_code == 200
    body = got.json()
    status = ServeStatus.model_validate(body)
    assert status.model == "smollm2-135m" and body["engine_pid"] and body["placement"] is None
    assert body["leases"] == [] and status.radius == "household" and status.public.enabled is False
    last = status.requests[-1]
    assert last.state == "done" and last.ttft_ms and last.tokens_per_s and last.tokens > 0
    assert status.throughput.samples and max(status.throughput.samples) > 0
    assert status.throughput.ttft_ms_p50 is not None
    lm = status.layer_map
    assert lm is not None and lm.model == "smollm2-135m" and lm.n_layers == 30
    (span,) = lm.spans
    assert span.local and span.first == 0 and span.count == 30 and lm.output_node == span.node_id
    assert status.nodes[0].radius == "machine" and status.nodes[0].state == "holding"
    assert KEY not in got.text and PROMPT not in got.text and (not text or text not in got.text)


def test_since_and_last_event_id_replay_what_the_feed_holds(srv: Server) -> None:
    raw, events = asyncio.run(read_until(srv.url + SERVE_EVENTS_PATH + "?since=0", "request_done", AUTH, 10))
    assert events[0].seq == 1 and "model_loaded" in [e.kind for e in events]
    done = next(e for e in events if e.kind == "request_done")
    raw, after = asyncio.run(read_until(srv.url + SERVE_EVENTS_PATH, "request_done",
                                        AUTH | {"Last-Event-ID": str(done.seq - 1)}, 10))
    assert after[0].seq == done.seq
    _, after = asyncio.run(read_until(srv.url + SERVE_EVENTS_PATH + f"?since={done.seq - 2}", "request_done",
                                      AUTH | {"Last-Event-ID": "0"}, 10))  # the query wins
    assert after[0].seq == done.seq - 1


@pytest.mark.parametrize("query", ["since=-1", "since=abc", "since=1e3", "since=" + "9" * 40,
                                   "since=%00", "since=12%0Aevent:x", "since=" + "1" * 5000])
def test_malformed_since_is_a_clear_400(srv: Server, query: str) -> None:
    r = httpx.get(f"{srv.url}{SERVE_EVENTS_PATH}?{query}", headers=AUTH, timeout=10)
    assert r.status_code in (400, 414, 431), r.text
    if r.status_code == 400:
        assert r.json()["error"]["param"] == "since"


def test_wrong_methods_and_odd_queries_never_500(srv: Server) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in (STATUS_PATH, SERVE_EVENTS_PATH):
            r = httpx.request(method, srv.url + path, headers=AUTH, content=b"{}", timeout=10)
            assert r.status_code == 405, (method, path, r.status_code)
    r = httpx.get(srv.url + STATUS_PATH + "?since=abc&x=" + "y" * 2000, headers=AUTH, timeout=10)
    assert r.status_code == 200
    bad = httpx.get(srv.url + SERVE_EVENTS_PATH, headers=AUTH | {"Last-Event-ID": "-3"}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "Last-Event-ID"
    assert httpx.get(srv.url + STATUS_PATH, timeout=10).status_code == 401
    assert httpx.get(srv.url + SERVE_EVENTS_PATH, timeout=10).status_code == 401


def test_streams_per_client_are_bounded(srv: Server) -> None:
    async def main() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            streams = [client.stream("GET", srv.url + SERVE_EVENTS_PATH, headers=AUTH)
                       for _ in range(MAX_STREAMS_PER_CLIENT + 1)]
            codes = []
            opened = []
            try:
                for s in streams:
                    r = await s.__aenter__()
                    opened.append(s)
                    codes.append(r.status_code)
            finally:
                for s in opened:
                    await s.__aexit__(None, None, None)
            return codes

    codes = asyncio.run(main())
    assert codes[:MAX_STREAMS_PER_CLIENT] == [200] * MAX_STREAMS_PER_CLIENT
    assert codes[-1] == 429


QUERY_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40).map(str.strip)  # h11 refuses a value with outer spaces


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from([STATUS_PATH, SERVE_EVENTS_PATH]), since=st.none() | QUERY_TEXT,
       last=st.none() | HEADER_TEXT, extra=st.dictionaries(st.text("abcxyz_", min_size=1, max_size=6), QUERY_TEXT,
                                                            max_size=3))
def test_random_queries_and_headers_get_an_answer_or_a_clear_4xx(
        srv: Server, path: str, since: str | None, last: str | None, extra: dict[str, str]) -> None:
    """Fuzzed like every other route: whatever the query and Last-Event-ID, a 200 (a status, or an
    event stream that starts with events or a heartbeat) or a 4xx naming what was wrong; never a 500."""
    params = dict(extra) | ({"since": since} if since is not None else {})
    headers = AUTH | ({"Last-Event-ID": last} if last is not None else {})
    with httpx.stream("GET", srv.url + path, params=params, headers=headers, timeout=10) as r:
        if r.status_code == 200 and path == STATUS_PATH:
            ServeStatus.model_validate_json(r.read())
            return
        if r.status_code == 200:
            first = next(r.iter_bytes(), b"")
            assert first.startswith((b"id:", b":", b"event:", b"retry:")), first[:80]
            return
        body = r.read()
    assert 400 <= r.status_code < 500 and r.status_code != 404, (r.status_code, body[:200])
    if r.status_code == 400:
        assert json.loads(body)["error"]["param"] in ("since", "Last-Event-ID", "last-event-id"), body[:200]
