"""`hearth credits receipts [--verify]`: this identity's receipts for its finished public-swarm jobs,
and (with --verify) the audit of each: the worker's signature, and that the charge equals the
receipt's tokens times the price on the coordinator's books and on the ledger
(`public_swarm.coordinator.receipt_audit` says what is checked and how failed-over jobs are shown)."""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hearth.cli.common import JsonOpt, out, settings

if TYPE_CHECKING:
    from hearth.public_swarm.coordinator.receipt_audit import Audit
    from hearth.public_swarm.coordinator.receipts_wire import ReceiptView
    from hearth.public_swarm.coordinator.wire import LineView

UrlOpt = Annotated[str | None, typer.Option(
    "--coordinator", "--url", help="The coordinator's URL, http(s)://HOST:PORT (default: HEARTH_COORDINATOR).")]


def receipts(
    url: UrlOpt = None,
    verify: Annotated[bool, typer.Option(
        "--verify", help="Check each receipt's signature and that the charge equals its tokens × the price; "
                         "exit 10 naming each job that does not check.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many of the newest finished jobs.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List the signed receipts of this identity's finished jobs on the public swarm, newest first."""
    from hearth.identity import NodeIdentity
    from hearth.public_swarm.coordinator.client import CoordinatorClient, coordinator_url
    from hearth.public_swarm.coordinator.receipt_audit import audit, failures

    config = settings()
    base, me = coordinator_url(url or config.coordinator), NodeIdentity.load_or_create(config.home)

    async def ask() -> tuple[list[ReceiptView], list[LineView]]:
        async with CoordinatorClient(base, me) as client:
            listing = await client.receipts(limit)
            statement = (await client.credits()).entries if verify else []
            return list(listing.data), list(statement)

    views, statement = asyncio.run(ask())
    audits = [audit(v, me.node_id, statement) for v in views] if verify else []
    if as_json:
        checked = {a.job_id: {"ok": a.ok, "problems": list(a.problems), "notes": list(a.notes)} for a in audits}
        out.print_json(json.dumps([{**v.model_dump(), **({"verify": checked[v.job_id]} if verify else {})}
                                   for v in views]))
    else:
        _table(views, {a.job_id: a for a in audits})
    failed = failures(audits)
    if failed is not None:
        raise failed


def _table(views: list[ReceiptView], audits: dict[str, Audit]) -> None:
    if not views:
        out.print("no finished jobs yet")
        return
    table = Table("when", "job", "model", "tokens", "µcr", "worker", *(["check"] if audits else []))
    table.columns[1].no_wrap = True  # a job id is copied whole
    for v in views:
        when = datetime.datetime.fromtimestamp(v.created_at).strftime("%Y-%m-%d %H:%M:%S")
        row = [when, v.job_id, escape(v.model), f"{v.prompt_tokens}+{v.completion_tokens}", str(v.cost),
               ", ".join(v.workers) or "-"]
        if audits:
            a = audits[v.job_id]
            row.append("[green]ok[/]" if a.ok else "[red]" + escape("; ".join(a.problems)) + "[/]")
        table.add_row(*row)
    out.print(table)
    for a in audits.values():
        for note in a.notes:
            out.print(f"  job {a.job_id}: {escape(note)}")
