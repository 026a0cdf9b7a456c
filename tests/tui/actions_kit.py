"""A minimal app with the dashboard's actions bound (the real DashApp binds the same), for pilot tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.app import App, ComposeResult
from textual.notifications import SeverityLevel
from textual.pilot import Pilot
from textual.widgets import Footer, Static

from hearth.tui.actions import ActionContext
from hearth.tui.commands import BINDINGS, DashCommands, dispatch


class ActionsApp(App[None]):
    BINDINGS = BINDINGS
    COMMANDS = App.COMMANDS | {DashCommands}

    def __init__(self, ctx: ActionContext) -> None:
        super().__init__()
        self.action_context = ctx
        self.notes: list[tuple[str, str]] = []
        self.crashed: list[BaseException] = []

    def compose(self) -> ComposeResult:
        yield Static("hearth dash actions")
        yield Footer()

    async def action_dash(self, name: str) -> None:
        await dispatch(self, name)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        self.notes.append((severity, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def _handle_exception(self, error: Exception) -> None:
        self.crashed.append(error)
        super()._handle_exception(error)

    def said(self, words: str, severity: str | None = None) -> bool:
        return any(words in m and (severity is None or s == severity) for s, m in self.notes)


async def until(pilot: Pilot[Any], check: Callable[[], object], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            app = pilot.app
            notes = getattr(app, "notes", None)
            raise AssertionError(f"timed out waiting for {what or check}; notes: {notes}")
        await pilot.pause(0.05)
