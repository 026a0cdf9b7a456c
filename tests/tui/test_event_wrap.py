"""Event lines wider than the log wrap under the message instead of being cut off."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hearth.tui.widgets.events import INDENT, MIN_WIDTH, wrapped

words = st.lists(st.text(alphabet="abcdefghij:()0123456789", min_size=1, max_size=30), min_size=1, max_size=30)


@given(words, st.integers(MIN_WIDTH, 120))
def test_every_line_fits_and_no_word_is_lost(parts: list[str], width: int) -> None:
    text = "12:00:00 failover        " + " ".join(parts)
    lines = wrapped(text, width)
    assert all(len(line) <= width for line in lines)
    assert all(line.startswith(INDENT) for line in lines[1:])
    assert "".join(line.strip() for line in lines).replace(" ", "") == text.replace(" ", "")


def test_a_short_line_or_a_log_not_laid_out_yet_is_written_whole() -> None:
    text = "12:00:00 failover        failover took 3200 ms (lost: node3)"
    assert wrapped(text, 200) == [text]
    assert wrapped(text, 0) == [text]
    assert wrapped(text, 30)[1:] and wrapped(text, 30)[0].startswith("12:00:00")
