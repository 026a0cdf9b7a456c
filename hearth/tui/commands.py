"""PLACEHOLDER for the tui branch only: helper "actions" owns this module (contract D3) and the
lead's merge keeps that version. Here it only gives the names `hearth.tui.app` imports, so the
dashboard runs and is tested before the merge."""

from __future__ import annotations

from typing import Any

from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import Hits, Provider

ACTIONS = {"pair": ("p", "Pair"), "unpair": ("u", "Unpair"), "model": ("m", "Model"), "radius": ("r", "Radius"),
           "price": ("c", "Max price"), "drain": ("d", "Drain"), "stop": ("s", "Stop node")}
"""The keys and labels of helper "actions"' version at the time of writing (the snapshots show them)."""

BINDINGS: list[BindingType] = [Binding(key, f"dash('{name}')", label) for name, (key, label) in ACTIONS.items()]


class DashCommands(Provider):
    async def search(self, query: str) -> Hits:
        return
        yield


async def dispatch(app: App[Any], name: str) -> None:
    app.notify(f"{name}: not in this build yet", severity="error")
