"""Tokens per second over the last minutes as a sparkline, with time to first token and the queue."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Sparkline, Static

from hearth.node_api.status import ServeStatus
from hearth.tui.widgets.palette import MUTED
from hearth.tui.widgets.text import millis


def summary(status: ServeStatus) -> Content:
    t = status.throughput
    now = f"{t.samples[-1]:.1f}" if t.samples else "-"
    peak = f"{max(t.samples):.1f}" if t.samples else "-"
    running = sum(1 for r in status.requests if r.state == "running")
    minutes = len(t.samples) * t.sample_s / 60
    return Content.assemble(
        f"{now} tok/s", (f"  peak {peak} in {minutes:.0f} min", MUTED), "\n",
        f"TTFT {millis(t.ttft_ms_p50)}  queue {t.queue_depth}  run {running}")


class ThroughputPanel(Vertical):
    DEFAULT_CSS = """
    ThroughputPanel { height: auto; }
    ThroughputPanel > Static { height: 2; }
    ThroughputPanel > Sparkline { height: 2; }
    """

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id)
        self.shown: tuple[Content, list[float]] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="tput-line")
        yield Sparkline([], summary_function=max)

    def show(self, status: ServeStatus) -> None:
        line, samples = summary(status), list(status.throughput.samples)
        if self.shown == (line, samples):
            return
        self.shown = (line, samples)
        self.query_one(Static).update(line, layout=False)  # two lines, always: no new layout
        self.query_one(Sparkline).data = samples  # not [0.0]: one equal value is drawn as a full bar
