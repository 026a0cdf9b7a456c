"""PLACEHOLDER for the tui branch only: helper "actions" owns this module (contract D3) and the
lead's merge keeps that version. Here it only gives the names `hearth.tui.app` imports, so the
dashboard runs and is tested before the merge."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import Hits, Provider

BINDINGS: list[BindingType] = [Binding("p", "dash('pair')", "pair")]


class DashCommands(Provider):
    async def search(self, query: str) -> Hits:
        return
        yield


async def dispatch(app: App[Any], name: str) -> None:
    app.notify(f"{name}: not in this build yet", severity="error")
