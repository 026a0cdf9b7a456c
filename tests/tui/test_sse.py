"""The event-stream parser: what a server writes comes back the same however the bytes are cut."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hearth.tui.sse import LineSplitter, SseMessage, SseParser, SseTooLong, parse

text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=40)
names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=16)
messages = st.lists(st.builds(SseMessage, event=names, data=st.lists(text, min_size=1, max_size=3).map("\n".join),
                              id=st.one_of(st.none(), st.integers(1, 10**9).map(str))), max_size=8)


def encode(found: list[SseMessage], end: str, heartbeat: bool) -> bytes:
    out = []
    for m in found:
        if heartbeat:
            out.append(":")
        if m.id is not None:
            out.append(f"id: {m.id}")
        out.append(f"event: {m.event}")
        out.extend(f"data: {line}" for line in m.data.split("\n"))
        out.append("")
    return "".join(line + end for line in out).encode()


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(marks, marks[1:], strict=False)]


@given(messages, st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.lists(st.integers(0, 10**6), max_size=10))
def test_messages_come_back_whatever_the_line_ends_and_cuts(found: list[SseMessage], end: str, beat: bool,
                                                            points: list[int]) -> None:
    assert parse(cut(encode(found, end, beat), points)) == found


@given(st.binary(max_size=300), st.lists(st.integers(0, 10**6), max_size=10))
def test_any_bytes_never_crash_the_parser(data: bytes, points: list[int]) -> None:
    try:
        parse(cut(data, points))
    except SseTooLong:
        pytest.fail("short input is never too long")


def test_comments_and_empty_messages_are_no_messages() -> None:
    assert parse([b": heartbeat\n\n\n", b"retry: 100\nfoo: bar\n\n"]) == []


def test_a_data_line_without_a_space_and_a_default_event_name() -> None:
    assert parse([b"data:{}\n\n"]) == [SseMessage("message", "{}")]


def test_the_last_id_is_what_to_reconnect_with() -> None:
    parser = SseParser()
    for line in ["id: 7", "data: x", "", "data: y", ""]:
        parser.feed(line)
    assert parser.last_id == "7"


def test_a_line_past_its_bound_is_refused_before_it_grows() -> None:
    with pytest.raises(SseTooLong):
        LineSplitter(max_line=100).feed(b"data: " + b"x" * 200)


def test_data_past_its_bound_is_refused() -> None:
    parser = SseParser(max_data=50)
    with pytest.raises(SseTooLong):
        for _ in range(10):
            parser.feed("data: " + "y" * 10)
