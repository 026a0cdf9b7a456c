"""The public radius: the link to the coordinator and the swarm's size, balance, holds, the price
ceiling, what this machine contributes (jobs served, credits earned), then the recent jobs with
their cost, as many as the panel has rows for (at 80x24 it has few: the figures come first)."""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from hearth.node_api.status import PublicView
from hearth.tui.widgets.palette import BAD, MUTED, OK
from hearth.tui.widgets.text import credits, fit

RECENT = 3


def _count(n: int | None) -> str:
    return "?" if n is None else str(n)


def draw(public: PublicView, rows: int | None = None) -> Content:
    """The panel's lines; `rows` (the panel's height) bounds the recent jobs shown."""
    lines: list[Content] = []
    if not public.enabled:
        lines.append(Content.assemble(("off", MUTED), " (hearth serve --radius public)"))
    else:
        link = ("connected", OK) if public.connected else ("not connected", BAD)
        ceiling = "none" if public.max_price is None else f"{public.max_price}/M"
        lines += [Content.assemble(link, ("  " + (public.coordinator or ""), MUTED))]
        if not public.connected and public.problem:
            lines.append(Content.assemble((public.problem, MUTED)))
        lines += [Content(f"balance {credits(public.balance)}  held {credits(public.held)}"),
                  Content(f"ceiling {ceiling}  spent {credits(public.spent)}")]
        if public.swarm_workers is not None or public.swarm_queued is not None:
            lines.append(Content(f"workers {_count(public.swarm_workers)}  queued {_count(public.swarm_queued)}"))
    if public.contributing:
        lines.append(Content.assemble(("served", OK), f" {public.jobs_served} jobs, earned {credits(public.earned)}"))
    room = RECENT if rows is None else max(0, min(RECENT, rows - len(lines)))
    if public.enabled and room:
        for job in public.recent[-room:][::-1]:
            cost = credits(job.cost_credits)
            lines.append(Content.assemble((fit(job.model, 12), MUTED), f" {job.tokens} tok {cost}"))
    return Content("\n").join(lines)


class PublicPanel(Widget):
    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 (Textual's name)
        super().__init__(id=id)
        self.public = PublicView()

    def show(self, public: PublicView) -> None:
        if public != self.public:
            self.public = public
            self.refresh()

    def render(self) -> Content:
        return draw(self.public, self.size.height or None)
