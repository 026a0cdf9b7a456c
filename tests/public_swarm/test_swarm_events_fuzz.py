"""`GET /v1/swarm/events` fuzzed (hypothesis) against a real `hearth coordinator` process: any
`?since=` and any `Last-Event-ID` gets a 200 stream only when it is an event's sequence number
(ASCII digits, at most 2^53), else a 400 with hearth's error body naming the parameter; a 429 only
while the client's stream slots are still held; never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hearth.public_swarm.coordinator.wire import SWARM_EVENTS
from tests.public_swarm.coordinator_proc import Coordinator, coordinator
from tests.public_swarm.limits_kit import UNLIMITED

pytestmark = pytest.mark.slow

numbers = st.integers(min_value=-(2**70), max_value=2**70).map(str)
texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30)
header_texts = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)
special = st.sampled_from(["", " ", "0", "9007199254740992", "9007199254740993", "1e3", "0x1", "+1", "1_000", "-0",
                           "\u0661", "\uff11", "00000000000000001", "１"])


def valid(text: str) -> bool:
    t = text.strip()
    return t.isascii() and t.isdigit() and len(t) <= 16 and int(t) <= 2**53


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    with coordinator(Path(tmp_path_factory.mktemp("events-fuzz")), None, *UNLIMITED) as c:
        yield c


@pytest.mark.parametrize("where", ["query", "header"])
def test_fuzzed_since_is_a_stream_or_a_400_never_a_500(coord: Coordinator, where: str) -> None:
    values = (numbers | texts | special) if where == "query" else \
        (numbers | header_texts | special).map(str.strip)  # a header value has no outer blanks on the wire
    seen: set[int] = set()
    with httpx.Client(timeout=10) as http:

        @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(value=values)
        def one(value: str) -> None:
            params = {"since": value} if where == "query" else None
            headers = {"Last-Event-ID": value.encode()} if where == "header" else None  # UTF-8 bytes as sent
            with http.stream("GET", coord.url + SWARM_EVENTS, params=params, headers=headers) as r:
                seen.add(r.status_code)
                if valid(value):
                    assert r.status_code in (200, 429), (value, r.status_code)
                    return
                r.read()
                assert r.status_code == 400, (value, r.status_code, r.text[:300])
                assert r.json()["error"]["param"] == ("since" if where == "query" else "Last-Event-ID")

        one()
    assert 400 in seen and 200 in seen
