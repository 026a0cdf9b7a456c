"""The dashboard's dialogs (Textual ModalScreens) for its actions; the work is in actions.py.

Each dialog runs its action in a worker and shows a HearthError as a notification (`guarded`),
never a traceback. Keys: Enter chooses, Escape closes; y / n answer a ConfirmScreen.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, ProgressBar, Static
from textual.widgets.option_list import Option

from hearth.errors import HearthError
from hearth.escalation.consent import question
from hearth.pairing.flow import CodeReady
from hearth.pairing.transport import Paired
from hearth.tui import actions
from hearth.tui.actions import ActionContext
from hearth.tui.control_client import LoadProgress

T = TypeVar("T")
log = logging.getLogger("hearth.dash")
CSS = """
ModalScreen { align: center middle; }
ModalScreen > Vertical { width: 76; max-width: 100%; height: auto; max-height: 100%; border: round $accent;
                         padding: 0 1; background: $surface; }
ModalScreen Horizontal { height: auto; }
ModalScreen OptionList { height: auto; max-height: 12; }
ModalScreen .title { text-style: bold; }
"""


async def guarded(app: App[Any], work: Awaitable[T]) -> T | None:
    """The work's result, or None after showing its HearthError (or the machine's refusal) as a notification."""
    try:
        return await work
    except HearthError as exc:
        app.notify(exc.message, severity="error", markup=False, timeout=10)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        app.notify(f"{exc.strerror or exc}{where}", severity="error", markup=False, timeout=10)
    except Exception as exc:  # a bug: its traceback goes to the log, the person gets one line
        log.exception("a dashboard action failed")
        app.notify(f"The action failed unexpectedly ({type(exc).__name__}: {exc}); see the log.",
                   severity="error", markup=False, timeout=10)
    return None


class Dialog(ModalScreen[T]):
    DEFAULT_CSS = CSS
    BINDINGS = [Binding("escape", "close", "Close")]

    def action_close(self) -> None:
        self.workers.cancel_all()
        self.dismiss(None)


class ConfirmScreen(Dialog[bool]):
    """A yes/no question (unpair, stop, public consent); dismisses True for yes."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n", "answer(False)", "No"),
                Binding("escape", "answer(False)", "No")]

    def __init__(self, text: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.text, self.yes, self.no = text, yes, no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.text, markup=False)
            with Horizontal():
                yield Button(f"{self.yes} (y)", id="yes", variant="primary")
                yield Button(f"{self.no} (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class PickScreen(Dialog[str]):
    """Choose one of several names (whom to unpair)."""

    def __init__(self, title: str, names: list[str]) -> None:
        super().__init__()
        self.title_text, self.names = title, names

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title", markup=False)
            yield OptionList(*[Option(n, id=str(i)) for i, n in enumerate(self.names)])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.names[event.option_index])


class PairScreen(Dialog[str]):
    """Pair by a short code: empty shows a code here; a code joins the machine showing it. Then
    both screens show three words; y stores the peer when they match."""

    BINDINGS = [Binding("escape", "close", "Cancel"), Binding("y", "match", "They match", show=False)]

    def __init__(self, ctx: ActionContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.code: str | None = None
        self.result: Paired | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Pair with another machine", classes="title")
            yield Input(placeholder="its code (e.g. 7-crossbow-anvil), or Enter to show a code here", id="code")
            yield Static("", id="shown", markup=False)
            with Horizontal():
                yield Button("They match (y)", id="match", variant="success", disabled=True)
                yield Button("Cancel (esc)", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.disabled = True
        self.run_worker(self._pair(event.value.strip()), group="pair", exclusive=True)

    def _show(self, text: str) -> None:
        self.query_one("#shown", Static).update(text)

    def _code(self, notice: CodeReady) -> None:
        self.code = notice.code
        self._show(f"Pairing code: {notice.code}   (one use, expires in 5 minutes)\n"
                   f"On the other machine: hearth pair {notice.code}   (or p in its dashboard)")

    async def _pair(self, code: str) -> None:
        self._show("Looking for the machine with that code…" if code else "Making a code…")
        work = actions.pair_guest(self.ctx, code) if code else actions.pair_host(self.ctx, self._code)
        result = await guarded(self.app, work)
        if result is None:
            self.dismiss(None)
            return
        self.result = result
        self._show(f"Verifier: {result.verifier}\nDo both screens show these three words? y if they do.")
        self.query_one("#match", Button).disabled = False

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "match":
            self.action_match()
        else:
            self.action_close()

    def action_match(self) -> None:
        if self.result is not None:
            self.run_worker(self._keep(self.result), group="pair", exclusive=True)

    async def _keep(self, result: Paired) -> None:
        done = await guarded(self.app, actions.keep_pair(self.ctx, result))
        if done is not None:
            how = (f"WireGuard {done.circle.wireguard}" if done.circle.wireguard else "the sealed tunnel")
            self.app.notify(f"Paired with {done.name} ({done.node_id}); the circle uses {how}.", markup=False)
            if done.circle.problem:
                self.app.notify(f"WireGuard: {done.circle.problem}", severity="warning", markup=False)
        self.dismiss(done.name if done is not None else None)


class ModelPicker(Dialog[str]):
    """Stored models, then what the catalogue can pull; Enter loads one on the server, with progress."""

    def __init__(self, ctx: ActionContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.choices = actions.model_choices(ctx)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Load a model on the server", classes="title")
            yield OptionList(*[Option(f"{c.name}  ({c.description})", id=c.name) for c in self.choices])
            yield Label("", id="phase", markup=False)
            yield ProgressBar(total=1.0, show_eta=False, id="progress")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        name = self.choices[event.option_index].name
        event.option_list.disabled = True
        self.run_worker(self._load(name), group="load", exclusive=True)

    def _progress(self, p: LoadProgress) -> None:
        verb = "Pulling" if p.phase == "pull" else "Loading"
        self.query_one("#phase", Label).update(f"{verb} {p.model}: {p.fraction:.0%}")
        self.query_one("#progress", ProgressBar).update(progress=p.fraction)

    async def _load(self, name: str) -> None:
        self.query_one("#phase", Label).update(f"Asking the server to load {name}…")
        loaded = await guarded(self.app, actions.load_model(self.ctx, name, self._progress))
        if loaded is not None:
            self.app.notify(f"{loaded} loaded.", markup=False)
        self.dismiss(loaded)


RADIUS_HELP = {
    "machine": "this machine only",
    "household": "also the nodes on this network",
    "trusted": "also the peers paired with p",
    "public": "also the public swarm, paid in credits, when the circle cannot serve",
}


class RadiusScreen(Dialog[str]):
    """How far the server's requests may reach; public asks for consent first."""

    def __init__(self, ctx: ActionContext) -> None:
        super().__init__()
        self.ctx = ctx

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("How far may requests reach?", classes="title")
            yield OptionList(*[Option(f"{r}: {RADIUS_HELP[r]}", id=r) for r in actions.RADII])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.run_worker(self._set(actions.RADII[event.option_index]), group="radius", exclusive=True)

    async def _set(self, radius: str) -> None:
        consent = False
        if radius == "public":
            where = await actions.server_coordinator(self.ctx)  # the server's, not the dashboard's own
            consent = bool(await self.app.push_screen_wait(ConfirmScreen(question(where))))  # type: ignore[arg-type]
            if not consent:
                self.app.notify("The radius stays as it was.", severity="warning")
                self.dismiss(None)
                return
        now = await guarded(self.app, actions.set_radius(self.ctx, radius, consent=consent))
        if now is not None:
            self.app.notify(f"The server's radius is now {now}.", markup=False)
        self.dismiss(now)


class PriceScreen(Dialog[str]):
    """The most a public request may cost (credits per million tokens); empty: no ceiling."""

    def __init__(self, ctx: ActionContext) -> None:
        super().__init__()
        self.ctx = ctx

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Price ceiling for the public radius", classes="title")
            yield Input(placeholder="credits per million tokens, e.g. 5000 (empty: no ceiling)", id="price")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.run_worker(self._set(event.value), group="price", exclusive=True)

    async def _set(self, text: str) -> None:
        async def change() -> tuple[int | None]:  # a tuple: None alone would mean "refused"
            return (await actions.set_max_price(self.ctx, actions.parse_price(text)),)

        done = await guarded(self.app, change())
        if done is None:  # refused: the notification says why; the person may type again
            return
        shown = "no ceiling" if done[0] is None else f"{done[0]:,} credits per million tokens"
        self.app.notify(f"Price ceiling: {shown}.", markup=False)
        self.dismiss(shown)
