"""`hearth jobs`: async batch jobs on the public swarm (submit now, read the result later)."""

from __future__ import annotations

import datetime
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from hearth.cli.common import JsonOpt, out, settings

if TYPE_CHECKING:
    from hearth.public_swarm.coordinator.job_wire import JobView

CoordinatorOpt = Annotated[str | None, typer.Option(
    "--coordinator", help="The coordinator's URL, http(s)://HOST:PORT (default: HEARTH_COORDINATOR).")]
JobId = Annotated[str, typer.Argument(help="The job's id (from `hearth jobs submit`).")]

jobs_app = typer.Typer(help="Async batch jobs on the public swarm: submit, then read the result later.",
                       no_args_is_help=True)


def _show(job: JobView, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(job.model_dump()))
        return
    when = datetime.datetime.fromtimestamp(job.created_at).strftime("%Y-%m-%d %H:%M:%S")
    out.print(f"job [bold]{job.id}[/]: {job.state}, {escape(job.model)}, submitted {when}")
    if job.position is not None:
        wait = f", about {job.estimated_wait_s:g} s to wait" if job.estimated_wait_s is not None else ""
        out.print(f"  {job.position} job(s) ahead{wait}")
    if job.error:
        out.print(f"  [red]{escape(job.error)}[/]")
    if job.result is not None:
        from hearth.public_swarm.coordinator.jobs_client import gone_note

        u = job.result.usage
        out.print(f"  {u.prompt_tokens}+{u.completion_tokens} tokens, {u.cost_credits} micro-credits, "
                  f"finish: {job.result.finish_reason}")
        note = gone_note(job)
        if note is not None:
            out.print(f"  [yellow]{escape(note)}[/]")
        elif job.result.gone == "withheld":
            out.print(f"  its text: `hearth jobs result {job.id}` (a result is returned once)")
        else:
            out.print(escape(job.result.text), markup=False)


@jobs_app.command()
def submit(
    model: Annotated[str, typer.Argument(help="A served model's name (GET /v1/models) or sha256:<digest>.")],
    prompt: Annotated[str, typer.Argument(help="The prompt: one user message (or, with --raw, the raw text).")],
    raw: Annotated[bool, typer.Option("--raw", help="A completion prompt, not a chat message.")] = False,
    max_tokens: Annotated[int, typer.Option(min=1, help="Tokens to generate at most.")] = 256,
    temperature: Annotated[float | None, typer.Option(min=0, max=2)] = None,
    seed: Annotated[int | None, typer.Option(min=0)] = None,
    key: Annotated[str | None, typer.Option(help="Idempotency key: the same key again returns the same job.")] = None,
    max_price: Annotated[int | None, typer.Option(min=1, help="Refuse models above this price (credits/M tokens).")]
    = None,
    url: CoordinatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a job; it runs whether or not you stay (billed to this identity's credits)."""
    from hearth.public_swarm.coordinator.jobs_client import job_submit, with_jobs

    body = job_submit(model, prompt, raw=raw, max_tokens=max_tokens, temperature=temperature, seed=seed, key=key)
    _show(with_jobs(settings(), url, lambda jobs: jobs.submit(body, max_price)), as_json)


@jobs_app.command()
def status(job_id: JobId, url: CoordinatorOpt = None, as_json: JsonOpt = False) -> None:
    """A job's state, place in line and estimated wait (not its text: `hearth jobs result` fetches that, once)."""
    from hearth.public_swarm.coordinator.jobs_client import with_jobs

    _show(with_jobs(settings(), url, lambda jobs: jobs.status(job_id, peek=True)), as_json)


@jobs_app.command()
def result(
    job_id: JobId,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the job ends.")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds --wait waits at most.")] = 600.0,
    url: CoordinatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A job's result (with --wait, once it is done)."""
    from hearth.public_swarm.coordinator.jobs_client import with_jobs

    _show(with_jobs(settings(), url, lambda jobs: jobs.result(job_id, wait=wait, timeout=timeout)), as_json)


@jobs_app.command("list")
def list_jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state (queued, running, done, ...).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    url: CoordinatorOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """This identity's jobs, newest first."""
    from hearth.public_swarm.coordinator.jobs_client import with_jobs

    listed = with_jobs(settings(), url, lambda jobs: jobs.list(state, limit))
    if as_json:
        out.print_json(json.dumps(listed.model_dump()))
        return
    table = Table("id", "state", "model", "ahead", "tokens", title="your jobs")
    for j in listed.data:
        tokens = str(j.result.usage.completion_tokens) if j.result else ""
        table.add_row(j.id, j.state, escape(j.model), "" if j.position is None else str(j.position), tokens)
    out.print(table)


@jobs_app.command()
def cancel(job_id: JobId, url: CoordinatorOpt = None, as_json: JsonOpt = False) -> None:
    """Cancel a queued or running job (you pay for what was streamed)."""
    from hearth.public_swarm.coordinator.jobs_client import with_jobs

    _show(with_jobs(settings(), url, lambda jobs: jobs.cancel(job_id)), as_json)
