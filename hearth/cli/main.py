"""`hearth`: the command line. Each command group lives in its own module and only parses, calls
one function, and prints; this module assembles them, and is the only place that turns
HearthError into an exit code and a coloured line."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from hearth import __version__
from hearth.cli import dash, jobs, models, pair, pool, receipts, run, serve, swarm
from hearth.cli.common import err, out
from hearth.errors import HearthError, Stopped

app = typer.Typer(name="hearth", help="Run large open LLMs on the machines you already own.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

app.command()(run.run)
app.command()(serve.serve)
app.command()(dash.dash)
app.command()(models.pull)
app.add_typer(models.models_app, name="models")
app.command()(models.rm)
app.command()(pool.plan)
app.command()(pool.node)
app.command()(pool.peers)
app.command()(pair.pair)
app.command()(pair.unpair)
app.command()(pair.rendezvous)
app.command()(swarm.coordinator)
app.command()(swarm.contribute)
swarm.credits_app.command()(receipts.receipts)
app.add_typer(swarm.credits_app, name="credits")
app.add_typer(jobs.jobs_app, name="jobs")


@app.command()
def version() -> None:
    """Print hearth's version."""
    out.print(__version__)


def main(argv: list[str] | None = None) -> None:
    """`hearth` with `argv` (default: the command line); always ends in SystemExit."""
    try:
        app(args=argv, prog_name="hearth")
    except Stopped as exc:  # asked to stop: not an error
        err.print(exc.message)
        sys.exit(exc.exit_code)
    except HearthError as exc:
        err.print("[bold red]error:[/]", escape(exc.message))
        sys.exit(exc.exit_code)
    except OSError as exc:  # the machine refused (permissions, disk full): say what and where
        where = f": {exc.filename}" if exc.filename else ""
        err.print("[bold red]error:[/]", escape(f"{exc.strerror or exc}{where}"))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
