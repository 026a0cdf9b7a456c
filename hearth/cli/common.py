"""What every command shares: the consoles, the common options, settings, and signal handling."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from hearth.errors import InvalidRequest, Stopped

if TYPE_CHECKING:
    from hearth.escalation.pool import Engines
from hearth.models.store import ModelStore
from hearth.orchestrator.policy import PoolPolicy, pool_policy
from hearth.radius import Radius, deprecation, parse_radius
from hearth.settings import Settings, check_home, load_settings

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

RadiusOpt = Annotated[str | None, typer.Option(
    help="How far a model may reach when it does not fit: 'machine' (this machine only), 'household' "
         "(also LAN nodes), 'trusted' (also peers paired with `hearth pair`) or 'public' (also the public "
         "swarm at HEARTH_COORDINATOR, paid in credits, when the circle cannot serve; asks first). "
         "'local' is the old spelling of 'machine'. Default: HEARTH_RADIUS, else household.")]
YesOpt = Annotated[bool, typer.Option(
    "--yes", "-y", help="With --radius public: agree that a prompt the circle cannot serve goes to the public "
                        "swarm (HEARTH_PUBLIC_OK=1 does the same; otherwise hearth asks once).")]
MaxPriceOpt = Annotated[str | None, typer.Option(
    "--max-price", help="With --radius public: most a model may cost, in credits per million tokens "
                        "(HEARTH_MAX_PRICE); the swarm refuses pricier ones.", show_default=False)]
PoolOpt = Annotated[bool, typer.Option("--pool", help="Split the model across household nodes even if it fits here.")]
PeerOpt = Annotated[list[str] | None, typer.Option("--peer", help="A household node HOST:PORT that mDNS cannot reach.")]
MaxMemOpt = Annotated[str | None, typer.Option(help="Most memory hearth may use on this machine, e.g. 12G.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def say(text: str) -> None:
    """A line for the person on stderr, printed as plain text: addresses such as [fd00::5]:11436
    would otherwise be read as rich markup and vanish."""
    err.print(text, markup=False, highlight=False)


def settings(**overrides: Any) -> Settings:
    """Settings from the environment and the flags, the data folder checked, logging set up."""
    try:
        loaded = load_settings(**overrides)
    except ValidationError as exc:
        raise InvalidRequest(f"Invalid setting: {validation_line(exc)}") from exc
    check_home(loaded.home)
    logging.basicConfig(level=loaded.log_level.upper(), format="%(asctime)s %(name)s: %(message)s")
    return loaded


def validation_line(exc: ValidationError) -> str:
    """pydantic's many-line report as one line: `port (HEARTH_PORT='eleven'): Input should be ...`."""
    parts = []
    for e in exc.errors():
        field = ".".join(str(x) for x in e["loc"]) or "settings"
        shown = "" if field == "api_key" else f"={e.get('input')!r}"  # never echo a secret
        parts.append(f"{field} (HEARTH_{field.upper()}{shown}): {e['msg']}")
    return "; ".join(parts)


def policy(config: Settings, radius: str | None, pool: bool, peer: list[str] | None, max_memory: str | None,
           public: bool = False) -> PoolPolicy:
    """The pool policy from the shared options; an old --radius spelling gets a note on stderr.
    With --radius public the pool reaches as far as the circle does (trusted); what it cannot
    serve goes to the swarm (`engines`). Without --radius, HEARTH_RADIUS decides (public read as
    trusted by commands that serve their own circle)."""
    note = deprecation(radius) if radius is not None else None
    if note:
        err.print(f"[yellow]note:[/] {note}")
    chosen = parse_radius(radius if radius is not None else config.radius)
    if chosen is Radius.PUBLIC and not public and radius is None:
        chosen = Radius.TRUSTED
    if chosen is Radius.PUBLIC and not public:
        raise InvalidRequest("--radius public is for requests (`hearth run`, `serve`, `plan`); this command serves "
                             "its own circle: choose 'machine', 'household' or 'trusted'.")
    return pool_policy(config, Radius.TRUSTED if chosen is Radius.PUBLIC else chosen, pool, peer, max_memory)


def public_settings(radius: str | None, yes: bool, max_price: str | None, **overrides: Any) -> Settings:
    """Settings with --radius (its canonical name in `radius`; an old spelling gets a note),
    --max-price (read as pricing.parse_ceiling reads it) and --yes folded in."""
    from hearth.public_swarm.pricing import parse_ceiling

    ceiling = parse_ceiling(max_price) if max_price is not None else None
    config = settings(max_price=ceiling, **overrides)
    note = deprecation(radius) if radius is not None else None
    if note:
        err.print(f"[yellow]note:[/] {note}")
    chosen = parse_radius(radius) if radius is not None else Radius(config.radius)
    if (yes or max_price is not None) and chosen is not Radius.PUBLIC:
        err.print("[yellow]note:[/] --yes and --max-price matter only with --radius public.")
    return config.model_copy(update={"radius": chosen.value, **({"public_ok": True} if yes else {})})


def ask_person(question: str) -> bool:
    """A yes/no question on the terminal; no terminal, no consent."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    err.print(f"{question} [y/N] ", end="", markup=False, highlight=False)
    try:
        return input().strip().lower() in ("y", "yes")
    except EOFError:
        return False


def engines(config: Settings, chosen: PoolPolicy, *, ask: bool) -> Engines:
    """The engine pool for the options; with --radius public, wrapped to escalate to the swarm
    (consent: HEARTH_PUBLIC_OK / --yes, a remembered yes, or the person when `ask`)."""
    from hearth.escalation.consent import Consent
    from hearth.escalation.pool import Escalating, coordinator_of
    from hearth.orchestrator.engines import EnginePool

    pool = EnginePool(config, policy=chosen)
    if config.radius != Radius.PUBLIC:
        return pool
    consent = Consent(config.home, coordinator_of(config), given=config.public_ok,
                      ask=ask_person if ask else None)
    return Escalating(pool, config, consent, note=say)


def store(config: Settings) -> ModelStore:
    return ModelStore(config.models_dir)


def progress() -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), console=err, transient=True)


def text(value: str | bytes, what: str) -> str:
    """Text from the command line or a pipe, which may hold bytes that are not UTF-8 (Python
    keeps them as lone surrogates); refuse them plainly rather than fail deep inside."""
    try:
        data = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
        return data.decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise InvalidRequest(f"{what.capitalize()} is not valid UTF-8 text (bad byte at position {exc.start}); "
                             "check the terminal's or the file's encoding.") from None


_T = TypeVar("_T")


def until_signal(main: Coroutine[Any, Any, _T], what: str, clean_exit: tuple[int, ...] = ()) -> _T:
    """Run `main` until it ends or SIGINT/SIGTERM arrives; a signal cancels it, so its `finally`
    blocks close sockets and mDNS records, then the command stops with one line: exit 128 + the
    signal's number, or 0 for signals in `clean_exit`."""
    import signal

    async def guarded() -> _T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        got: list[int] = []

        def stop(signum: int) -> None:
            got.append(signum)
            if task is not None:
                task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        try:
            return await main
        except asyncio.CancelledError:
            if not got:
                raise
            name = signal.Signals(got[0]).name
            if got[0] in clean_exit:
                err.print(f"{what} stopped ({name}).")
                raise typer.Exit(0) from None
            raise Stopped(what, got[0]) from None
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    return asyncio.run(guarded())
