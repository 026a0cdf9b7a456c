"""The event feed without sockets: numbering, the ring, `since`, bounded subscribers and queues."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.node_api.feed import Feed, TooManyStreams, sse_lines
from hearth.node_api.status import DashEvent


def test_seq_starts_at_one_without_gaps_and_the_ring_is_bounded() -> None:
    feed = Feed(keep=5)
    events = [feed.publish("notice", f"n{i}", i=i) for i in range(12)]
    assert [e.seq for e in events] == list(range(1, 13))
    assert [e.seq for e in feed.since(0)] == list(range(8, 13))
    assert [e.seq for e in feed.since(10)] == [11, 12]
    assert feed.since(12) == [] and feed.since(-1) == feed.since(0)


def test_publish_from_threads_numbers_every_event_once() -> None:
    feed = Feed(keep=10_000)

    def burst() -> None:
        for _ in range(500):
            feed.publish("notice", "x")

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.seq for e in feed.since(0)] == list(range(1, 2001))


def test_data_is_clipped_to_facts_and_bad_kinds_are_refused() -> None:
    feed = Feed()
    e = feed.publish("notice", "m" * 2000, **{f"k{i}": i for i in range(40)}, text="s" * 5000)
    assert len(e.message) == 500 and len(e.data) == 16
    e = feed.publish("notice", "x", nan=float("nan"), obj=object(), flag=True)
    assert e.data["nan"] is None and isinstance(e.data["obj"], str) and e.data["flag"] is True
    DashEvent.model_validate(e.model_dump())
    with pytest.raises(ValueError):
        feed.publish("bad\nkind", "x")


def test_sse_lines_is_one_event_whatever_the_message_holds() -> None:
    e = Feed().publish("request_done", "line one\n\ndata: forged\nid: 99", tokens=3)
    raw = sse_lines(e).decode()
    assert raw.endswith("\n\n") and raw.count("\n\n") == 1
    lines = raw.rstrip("\n").split("\n")
    assert lines[0] == "id: 1" and lines[1] == "event: request_done" and lines[2].startswith("data: ")
    assert DashEvent.model_validate(json.loads(lines[2][6:])) == e


def test_subscribe_replays_since_then_goes_live_without_loss_or_repeats() -> None:
    async def main() -> list[int]:
        feed = Feed()
        for i in range(5):
            feed.publish("notice", str(i))
        async with feed.subscribe(since=2) as sub:
            feed.publish("notice", "live")
            return [(await sub.get(1)).seq for _ in range(4)]  # type: ignore[union-attr]

    assert asyncio.run(main()) == [3, 4, 5, 6]


def test_at_most_max_subscribers_and_a_slot_frees_on_exit() -> None:
    async def main() -> None:
        feed = Feed(max_subscribers=2)
        async with feed.subscribe(), feed.subscribe():
            with pytest.raises(TooManyStreams):
                feed.attach()
        assert feed.subscribers == 0
        sub = feed.attach()
        assert sub.detach() is True and sub.detach() is False

    asyncio.run(main())


def test_a_slow_subscriber_drops_its_oldest_then_reads_one_notice() -> None:
    async def main() -> list[DashEvent]:
        feed = Feed(queue=4)
        async with feed.subscribe() as sub:
            for i in range(10):
                feed.publish("notice", str(i))
            return [e for e in [await sub.get(0.1) for _ in range(6)] if e is not None]

    got = asyncio.run(main())
    notice, *rest = got
    assert notice.kind == "notice" and notice.data == {"dropped": 6, "first": 1, "last": 6}
    assert "6 events dropped" in notice.message
    assert [e.seq for e in rest] == [7, 8, 9, 10]


def test_get_times_out_with_none_and_close_ends_the_iteration() -> None:
    async def main() -> list[int]:
        feed = Feed()
        async with feed.subscribe() as sub:
            assert await sub.get(0.01) is None
            feed.publish("notice", "a")
            feed.close()
            return [e.seq async for e in sub]

    assert asyncio.run(main()) == [1]


def test_publish_from_another_thread_wakes_a_waiting_reader() -> None:
    async def main() -> int:
        feed = Feed()
        async with feed.subscribe() as sub:
            threading.Timer(0.05, feed.publish, ("notice", "from a thread")).start()
            event = await sub.get(5)
            assert event is not None
            return event.seq

    assert asyncio.run(main()) == 1


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 60), keep=st.integers(1, 20), since=st.integers(-5, 80))
def test_since_is_exactly_the_kept_tail_after_seq(n: int, keep: int, since: int) -> None:
    feed = Feed(keep=keep)
    for i in range(n):
        feed.publish("notice", str(i))
    expected = [s for s in range(max(1, n - keep + 1), n + 1) if s > since]
    assert [e.seq for e in feed.since(since)] == expected
    assert feed.last_seq == n


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.integers(0, 12), max_size=6), queue=st.integers(1, 8))
def test_a_reader_sees_every_seq_once_in_order_or_a_notice_for_the_hole(batches: list[int], queue: int) -> None:
    async def main() -> tuple[list[int], int]:
        feed = Feed(queue=queue)
        seen: list[int] = []
        async with feed.subscribe() as sub:
            for b in batches:
                for _ in range(b):
                    feed.publish("notice", "x")
                while (e := await sub.get(0)) is not None:
                    if e.kind == "notice" and "dropped" in e.data:
                        first, last = int(e.data["first"]), int(e.data["last"])  # type: ignore[arg-type]
                        seen.extend(range(first, last + 1))
                    else:
                        seen.append(e.seq)
        return seen, feed.last_seq

    seen, last = asyncio.run(main())
    assert seen == list(range(1, last + 1))


@settings(max_examples=200, deadline=None)
@given(query=st.one_of(st.none(), st.text(max_size=40)), header=st.one_of(st.none(), st.text(max_size=40)))
def test_since_parsing_takes_sequence_numbers_and_refuses_the_rest_clearly(query: str | None,
                                                                          header: str | None) -> None:
    from hearth.errors import InvalidRequest
    from hearth.node_api.feed_sse import MAX_SINCE, parse_since

    raw = query if query is not None else header
    try:
        got = parse_since(query, header)
    except InvalidRequest as exc:
        assert exc.param == ("since" if query is not None else "Last-Event-ID")
        return
    if raw is None:
        assert got is None
    else:
        assert got is not None and 0 <= got <= MAX_SINCE and got == int(raw.strip())
