"""`hearth coordinator`, `hearth credits`: the public swarm's coordinator and its credits."""

from __future__ import annotations

import datetime
import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hearth.cli.common import JsonOpt, MaxMemOpt, PeerOpt, PoolOpt, RadiusOpt, out, say, settings
from hearth.ports import DEFAULT_COORDINATOR_PORT, DEFAULT_WORKER_PAGE_PORT
from hearth.public_swarm.coordinator.ratelimit_rules import DEFAULT_LIMITS

CoordinatorOpt = Annotated[str | None, typer.Option(
    "--coordinator", help="The coordinator's URL, http(s)://HOST:PORT (default: HEARTH_COORDINATOR).")]


D = DEFAULT_LIMITS
AddressRate = Annotated[float, typer.Option(min=0.001, max=1e6, help=(
    "Requests a second (sustained) from one client address (IPv6: its /64), on every route."))]
AddressBurst = Annotated[int, typer.Option(min=1, max=10**6, help="Requests at once from one client address.")]
IdentityRate = Annotated[float, typer.Option(min=0.001, max=1e6, help=(
    "Requests a second (sustained) signed by one identity, counted once its signature verifies."))]
IdentityBurst = Annotated[int, typer.Option(min=1, max=10**6, help="Requests at once signed by one identity.")]
JobsOpt = Annotated[int, typer.Option(min=1, max=10_000, help=(
    "Jobs queued or running at once per account (or free-tier address); one more is refused (429)."))]
WorkerJobsOpt = Annotated[int, typer.Option(min=1, max=64, help="The most jobs offered to one worker at once.")]
FreeOpt = Annotated[int, typer.Option(min=0, max=10**9, help=(
    "Free tokens per client address per UTC day for unsigned requests (0: none, requests must be signed)."))]
WelcomesOpt = Annotated[int, typer.Option(min=0, max=10**6, help=(
    "New identities per client address per UTC day that get the welcome grant (many keys do not multiply it)."))]


def coordinator(
    bind: Annotated[str, typer.Option(help="This machine's address to serve on (never 0.0.0.0).")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="The coordinator's port.")] = DEFAULT_COORDINATOR_PORT,
    db: Annotated[str | None, typer.Option(
        help="The ledger's database: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
             "(default: sqlite:///HEARTH_HOME/coordinator.db).")] = None,
    welcome: Annotated[str | None, typer.Option(
        help="Credits each new identity receives once, e.g. 10 or 2.5 (default: 10).")] = None,
    reference: Annotated[list[str] | None, typer.Option(
        "--reference", metavar="NODE_ID", help="A worker the operator runs and trusts (repeatable): never "
        "escrowed or spot-checked, preferred for checking others.")] = None,
    address_rate: AddressRate = D.per_address.per_s,
    address_burst: AddressBurst = D.per_address.burst,
    identity_rate: IdentityRate = D.per_identity.per_s,
    identity_burst: IdentityBurst = D.per_identity.burst,
    jobs_per_requester: JobsOpt = D.jobs_per_requester,
    jobs_per_worker: WorkerJobsOpt = D.jobs_per_worker,
    free_tokens: FreeOpt = D.free_tokens_per_day,
    welcomes_per_address: WelcomesOpt = D.welcomes_per_address,
) -> None:
    """Run the public swarm's coordinator: workers register, requesters get credits and prices.

    This HEARTH_HOME's identity is the operator: `hearth credits grant` run with it grants credits.
    Over a rate limit a request gets 429 with Retry-After (README: the public radius's settings)."""
    from hearth.public_swarm.coordinator.ratelimit_rules import Limits, Rate
    from hearth.public_swarm.coordinator.serve import serve_coordinator

    limits = Limits(per_address=Rate(address_rate, address_burst), per_identity=Rate(identity_rate, identity_burst),
                    jobs_per_requester=jobs_per_requester, jobs_per_worker=jobs_per_worker,
                    free_tokens_per_day=free_tokens, welcomes_per_address=welcomes_per_address)
    serve_coordinator(settings(), bind, port, db, welcome, say=say, limits=limits, references=reference or ())


credits_app = typer.Typer(help="Your credits on the public swarm; the operator grants them.",
                          invoke_without_command=True)


def _when(at: float) -> str:
    return datetime.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


@credits_app.callback()
def credits(ctx: typer.Context, url: CoordinatorOpt = None, as_json: JsonOpt = False) -> None:
    """Show this identity's balance, open holds and recent entries (the first ask gets the welcome grant)."""
    if ctx.invoked_subcommand is not None:
        return
    from hearth.public_swarm.coordinator.account import show_credits
    from hearth.public_swarm.ledger.rules import format_credits as cr

    mine = show_credits(settings(), url)
    if as_json:
        out.print_json(json.dumps(mine.model_dump()))
        return
    out.print(f"{mine.account}: [bold]{cr(mine.balance)}[/] credits, {cr(mine.held)} held")
    for h in mine.holds:
        out.print(f"  hold {h.id}: {cr(h.amount)} until {_when(h.expires_at)}")
    if mine.entries:
        table = Table("when", "kind", "credits", "with", title="recent entries")
        for e in mine.entries:
            table.add_row(_when(e.at), e.kind, ("+" if e.amount > 0 else "") + cr(e.amount), escape(e.counterparty))
        out.print(table)


@credits_app.command()
def grant(
    account: Annotated[str, typer.Argument(help="The account (a node id) to give credits to.")],
    amount: Annotated[str, typer.Argument(help="Credits to give, e.g. 100 or 2.5.")],
    url: CoordinatorOpt = None,
    key: Annotated[str | None, typer.Option(
        help="Idempotency key (8-120 of A-Z a-z 0-9 . _ : -): the same key grants once. Default: a fresh one.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Operator only: give ACCOUNT some credits (run with the coordinator's HEARTH_HOME)."""
    from hearth.public_swarm.coordinator.account import grant_credits
    from hearth.public_swarm.ledger.rules import format_credits as cr

    done = grant_credits(settings(), url, account, amount, key)
    if as_json:
        out.print_json(json.dumps(done.model_dump()))
        return
    out.print(f"granted {cr(done.amount)} credits to {done.account} (key {escape(done.key)}); "
              f"its balance is {cr(done.balance)}")


def contribute(
    url: CoordinatorOpt = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="A stored model to offer (repeat for several; default: every stored model).")] = None,
    max_jobs: Annotated[int | None, typer.Option(min=1, max=64, help=(
        "Jobs to run at once, at most (default: as many as the engine decodes at once, HEARTH_PARALLEL)."))] = None,
    hours: Annotated[str | None, typer.Option(
        help="Take jobs only in these local hours, START-END, e.g. 22-07 (default: all day).")] = None,
    upload_cap: Annotated[str | None, typer.Option(
        help="Most output to send per day, e.g. 50M; past it jobs are declined (default: no cap).")] = None,
    radius: RadiusOpt = None,
    pool: PoolOpt = False,
    peer: PeerOpt = None,
    max_memory: MaxMemOpt = None,
    page_port: Annotated[int | None, typer.Option(min=0, max=65535, help=(
        "Port of this machine's own page of what it served (counts, never contents), on 127.0.0.1 only; "
        f"0: no page (default HEARTH_WORKER_PAGE_PORT, else {DEFAULT_WORKER_PAGE_PORT}; `hearth serve` "
        "looks there for what this machine served)."))] = None,
) -> None:
    """Contribute this machine (or household) to the public swarm: one outbound link, no open port.

    Measures each model's decode speed, offers the models by their GGUF sha256, runs the jobs the
    coordinator sends on hearth's engine pool (with --radius household, split across the household),
    streams them back with a signed receipt, and redials when the link drops; stop with Ctrl-C."""
    import signal

    from hearth.cli.common import policy, until_signal
    from hearth.orchestrator.engines import EnginePool
    from hearth.public_swarm.runner_rules import admission, engine_slots
    from hearth.public_swarm.worker import contribute as run

    config = settings()
    limits = admission(hours, upload_cap)
    engines = EnginePool(config, policy=policy(config, radius, pool, peer, max_memory))

    async def main() -> None:
        try:
            await run(config, url, engines.run, model or (), max_jobs, limits, say=say,
                      page_port=config.worker_page_port if page_port is None else page_port,
                      slots=lambda: engine_slots(engines.status(), config.parallel))
        finally:
            await engines.close()

    until_signal(main(), "hearth contribute", clean_exit=(signal.SIGINT, signal.SIGTERM))
