"""TextStream, the pure part of streaming text: UTF-8 held back, stop strings, nothing else."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hearth.engine.textstream import TextStream


def test_a_character_split_across_tokens_is_held_until_complete() -> None:
    star = "🌟".encode()
    s = TextStream([])
    assert s.push(star[:2]) == ("", False)
    assert s.push(star[2:] + b"!") == ("🌟!", False)


def test_a_stop_string_ends_the_text_and_its_prefix_is_held() -> None:
    s = TextStream(["<end>"])
    assert s.push(b"Hello <e") == ("Hello ", False)
    assert s.push(b"nd> more") == ("", True)
    s = TextStream(["<end>"])
    assert s.push(b"a <e") == ("a ", False)
    assert s.push(b"x") == ("<ex", False)  # not the stop after all: released


def test_a_character_cut_by_the_limit_is_dropped() -> None:
    s = TextStream([])
    assert s.push("ok🌟".encode()[:4]) == ("ok", False)
    assert s.finish() == ""


@given(st.text(max_size=40), st.lists(st.integers(1, 6), max_size=40), st.text(min_size=1, max_size=5))
def test_chunks_never_change_the_text(text: str, cuts: list[int], stop: str) -> None:
    """However the bytes are cut into tokens, the text sent is the text before the first stop."""
    data = text.encode()
    s = TextStream([stop])
    sent, stopped, i = [], False, 0
    for n in cuts + [len(data)]:
        piece, stopped = s.push(data[i:i + n])
        sent.append(piece)
        i += n
        if stopped or i >= len(data):
            break
    if not stopped:
        sent.append(s.finish())
    expected = text.split(stop, 1)[0] if stop in text else text
    assert "".join(sent) == expected
    assert stopped == (stop in text)
