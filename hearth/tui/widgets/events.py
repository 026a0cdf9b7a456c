"""The event log: one entry per event (node lost, failover took N ms, lease expired, pairing done,
job settled), appended as it comes; never redrawn whole. An entry wider than the log is wrapped,
its later lines indented under the message, so nothing is cut off at 80 columns."""

from __future__ import annotations

import textwrap
import time
from collections import deque

from textual import events
from textual.widgets import Log

from hearth.node_api.status import DashEvent

MAX_LINES = 500
INDENT = " " * 9
"""Under the message, past the clock."""
MIN_WIDTH = 20
"""Narrower than this (or not laid out yet): lines are written whole."""


def event_line(event: DashEvent) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(event.at))
    return f"{clock} {event.kind:<15} {event.message}"


def wrapped(text: str, width: int) -> list[str]:
    """`text` as lines of at most `width` characters, the later ones indented (a word longer than
    a line is broken)."""
    if width < MIN_WIDTH or len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, subsequent_indent=INDENT, break_on_hyphens=False,
                         drop_whitespace=True) or [text]


class EventLog(Log):
    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id, max_lines=MAX_LINES, highlight=False, auto_scroll=True)
        self.last_seq = 0
        self.entries: deque[str] = deque(maxlen=MAX_LINES)
        """What was said, unwrapped (wrapped again when the log's width changes)."""
        self._width = 0

    def add(self, event: DashEvent) -> None:
        if event.seq > self.last_seq:
            self.last_seq = event.seq
            self.say(event_line(event))

    def say(self, text: str) -> None:
        """One entry (an event's line, or a line of the dashboard's own), wrapped to the log's width."""
        self.entries.append(text)
        self.write_lines(wrapped(text, self._width))

    def on_resize(self, event: events.Resize) -> None:
        width = self.scrollable_content_region.width - 1  # a vertical scrollbar may come
        if width != self._width:
            self._width = width
            self.clear()
            self.write_lines([line for text in self.entries for line in wrapped(text, width)])
