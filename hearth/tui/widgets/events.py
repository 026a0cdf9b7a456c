"""The event log: one line per event (node lost, failover took N ms, lease expired, pairing done,
job settled), appended as it comes; never redrawn whole."""

from __future__ import annotations

import time

from textual.widgets import Log

from hearth.node_api.status import DashEvent

MAX_LINES = 500


def event_line(event: DashEvent) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(event.at))
    return f"{clock} {event.kind:<15} {event.message}"


class EventLog(Log):
    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id, max_lines=MAX_LINES, highlight=False, auto_scroll=True)
        self.last_seq = 0

    def add(self, event: DashEvent) -> None:
        if event.seq > self.last_seq:
            self.last_seq = event.seq
            self.write_line(event_line(event))

    def say(self, text: str) -> None:
        """A line of the dashboard's own (the stream dropped, came back)."""
        self.write_line(text)
