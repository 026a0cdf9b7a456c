"""The dashboard's actions as keys and as commands in the palette; `dispatch` runs one by name.

A dashboard app binds `BINDINGS`, adds `DashCommands` to its COMMANDS, and defines
`async def action_dash(self, name)` awaiting `dispatch(self, name)`. It may set an attribute
`action_context` (actions.ActionContext: its server URL and key, this machine's node); without
one, the context comes from the environment (HEARTH_HOME, HEARTH_API_KEY) and the default ports.
The action runs in a worker (dialogs wait for answers there); `dispatch` returns that worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen
from textual.worker import Worker

from hearth.tui import actions
from hearth.tui.actions import ActionContext
from hearth.tui.screens import ConfirmScreen, ModelPicker, PairScreen, PickScreen, PriceScreen, RadiusScreen, guarded

ACTIONS: dict[str, tuple[str, str, str]] = {
    "pair": ("p", "Pair", "Pair with another machine by a short code (shows the code and the verifier words)"),
    "unpair": ("u", "Unpair", "Forget a paired peer: its leases here end"),
    "model": ("m", "Model", "Choose the model the server loads (pulls it first if needed)"),
    "radius": ("r", "Radius", "Change how far the server's requests may reach"),
    "price": ("c", "Max price", "Change the price ceiling for the public radius"),
    "drain": ("d", "Drain", "Drain this machine's node: no new leases, running ones run out"),
    "stop": ("s", "Stop node", "Stop this machine's node (its leases end)"),
}
"""name -> (key, short label, what it does)."""

BINDINGS = [Binding(key, f"dash('{name}')", label) for name, (key, label, _) in ACTIONS.items()]


def context_of(app: App[Any]) -> ActionContext:
    ctx = getattr(app, "action_context", None)
    if isinstance(ctx, ActionContext):
        return ctx
    ctx = ActionContext.from_env()
    app.action_context = ctx  # type: ignore[attr-defined]
    return ctx


async def ask(app: App[Any], screen: Screen[Any]) -> Any:
    return await app.push_screen_wait(screen)


async def _pair(app: App[Any], ctx: ActionContext) -> None:
    await ask(app, PairScreen(ctx))


async def _unpair(app: App[Any], ctx: ActionContext) -> None:
    names = actions.paired_names(ctx)
    if not names:
        app.notify("No peer is paired; p pairs one.", severity="warning")
        return
    name = names[0] if len(names) == 1 else await ask(app, PickScreen("Unpair which peer?", names))
    if name is None or not await ask(app, ConfirmScreen(f"Unpair {name}? Its leases here end and it leaves "
                                                        "your trusted radius until you pair again.")):
        return
    gone = await actions.unpair(ctx, name)
    app.notify(f"Unpaired {gone.peer.info.name} ({gone.peer.node_id}).", markup=False)
    if gone.problem:
        app.notify(gone.problem, severity="warning", markup=False)


async def _model(app: App[Any], ctx: ActionContext) -> None:
    await ask(app, ModelPicker(ctx))


async def _radius(app: App[Any], ctx: ActionContext) -> None:
    await ask(app, RadiusScreen(ctx))


async def _price(app: App[Any], ctx: ActionContext) -> None:
    await ask(app, PriceScreen(ctx))


async def _drain(app: App[Any], ctx: ActionContext) -> None:
    if not await ask(app, ConfirmScreen(f"Drain this machine's node ({ctx.node})? It takes no new leases; the "
                                        "running ones run out.")):
        return
    answer = await actions.drain_node(ctx)
    app.notify(f"Node {answer.name} is draining; {answer.leases} lease(s) still running.", markup=False)


async def _stop(app: App[Any], ctx: ActionContext) -> None:
    if not await ask(app, ConfirmScreen(f"Stop this machine's node ({ctx.node})? Its leases end now, and "
                                        "requests using it fail over.", yes="Stop")):
        return
    answer = await actions.stop_node(ctx)
    app.notify(f"Node {answer.name} is stopping; {answer.leases} lease(s) ended.", markup=False)


HANDLERS: dict[str, Callable[[App[Any], ActionContext], Awaitable[None]]] = {
    "pair": _pair, "unpair": _unpair, "model": _model, "radius": _radius, "price": _price,
    "drain": _drain, "stop": _stop,
}


async def _run(app: App[Any], name: str) -> None:
    async def act() -> None:
        await HANDLERS[name](app, context_of(app))

    await guarded(app, act())


async def dispatch(app: App[Any], name: str) -> Worker[None] | None:
    """Run the action `name` (a key of ACTIONS) in a worker; an unknown name is a notification."""
    if name not in HANDLERS:
        app.notify(f"The dashboard has no action {name!r}.", severity="error", markup=False)
        return None
    return app.run_worker(_run(app, name), name=f"dash {name}", group="dash", exit_on_error=False)


class DashCommands(Provider):
    """The actions in the command palette (ctrl+p), with their keys."""

    def _command(self, name: str) -> Callable[[], Awaitable[Worker[None] | None]]:
        return partial(dispatch, self.app, name)

    async def discover(self) -> Hits:
        for name, (key, label, help_text) in ACTIONS.items():
            yield DiscoveryHit(f"{label} ({key})", self._command(name), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, (_, label, help_text) in ACTIONS.items():
            score = matcher.match(f"{label} {help_text}")
            if score > 0:
                yield Hit(score, matcher.highlight(label), self._command(name), text=label, help=help_text)


