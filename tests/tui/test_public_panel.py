"""The public panel's lines (pure) and whom the consent question names."""

from __future__ import annotations

from hearth.node_api.status import PublicJob, PublicView, ServeStatus
from hearth.tui.actions import consent_coordinator
from hearth.tui.widgets.public import draw

JOBS = [PublicJob(id=f"j{i}", model="llama3.1-70b", tokens=10 * i, cost_credits=i * 100_000, at=float(i))
        for i in range(1, 6)]


def lines(public: PublicView, rows: int | None = None) -> list[str]:
    return draw(public, rows).plain.split("\n")


def test_the_swarm_line_the_problem_and_contributing() -> None:
    view = PublicView(enabled=True, coordinator="http://198.51.100.4:11440", connected=False, balance=2_000_000,
                      held=0, swarm_workers=14, swarm_queued=2, problem="the coordinator is unreachable",
                      contributing=True, jobs_served=7, earned=3_200_000, recent=JOBS)
    shown = lines(view)
    assert shown[:2] == ["not connected  http://198.51.100.4:11440", "the coordinator is unreachable"]
    assert "workers 14  queued 2" in shown and "served 7 jobs, earned 3.2" in shown
    assert shown[-3].startswith("llama3.1-70b 50 tok") and len(shown) == 9


def test_recent_jobs_give_way_to_the_figures_in_a_short_panel() -> None:
    view = PublicView(enabled=True, connected=True, balance=1, held=0, swarm_workers=1, swarm_queued=0,
                      contributing=True, jobs_served=1, earned=1, recent=JOBS)
    assert len(lines(view, 6)) == 6 and lines(view, 6)[-1].startswith("llama3.1-70b 50 tok")
    assert len(lines(view, 3)) == 5  # the figures stay; no job fits
    assert "workers" not in draw(PublicView(enabled=True)).plain  # never asked: no swarm line


def test_contributing_while_not_public() -> None:
    assert lines(PublicView(contributing=True, jobs_served=2, earned=0)) == [
        "off (hearth serve --radius public)", "served 2 jobs, earned 0"]


def test_the_consent_names_the_servers_coordinator() -> None:
    status = ServeStatus(version="x", public=PublicView(coordinator="http://203.0.113.9:11440"))
    assert consent_coordinator(status) == "http://203.0.113.9:11440"
    for unknown in (None, ServeStatus(version="x")):
        assert "where `hearth serve` runs" in consent_coordinator(unknown)
