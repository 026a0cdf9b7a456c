"""The public radius: balance, holds, the price ceiling, recent jobs with their cost, and when
this machine contributes, the jobs it served and the credits it earned."""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from hearth.node_api.status import PublicView
from hearth.tui.widgets.palette import BAD, MUTED, OK
from hearth.tui.widgets.text import credits, fit

RECENT = 3


def draw(public: PublicView) -> Content:
    if not public.enabled and not public.contributing:
        return Content.assemble(("off", MUTED), " (hearth serve --radius public)")
    link = ("connected", OK) if public.connected else ("not connected", BAD)
    ceiling = "none" if public.max_price is None else f"{public.max_price}/M"
    lines: list[Content] = [
        Content.assemble(link, ("  " + (public.coordinator or ""), MUTED)),
        Content(f"balance {credits(public.balance)}  held {credits(public.held)}"),
        Content(f"ceiling {ceiling}  spent {credits(public.spent)}"),
    ]
    for job in public.recent[-RECENT:][::-1]:
        lines.append(Content.assemble((fit(job.model, 12), MUTED), f" {job.tokens} tok {credits(job.cost_credits)}"))
    if public.contributing:
        lines.append(Content.assemble(("served", OK), f" {public.jobs_served} jobs, earned {credits(public.earned)}"))
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
        return draw(self.public)
