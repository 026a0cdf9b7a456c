"""`hearth serve`: the OpenAI- and Ollama-compatible endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hearth.cli.common import (
    MaxMemOpt,
    MaxPriceOpt,
    PeerOpt,
    PoolOpt,
    RadiusOpt,
    YesOpt,
    engines,
    err,
    policy,
    public_settings,
    say,
)
from hearth.errors import InvalidRequest
from hearth.ports import DEFAULT_SERVE_PORT


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help=f"Port (default {DEFAULT_SERVE_PORT}).")] = None,
    api_key: Annotated[str | None, typer.Option(
        help="Bearer key clients must send; required beyond loopback. Visible to other users of this "
             "machine (in `ps`): prefer --api-key-file or HEARTH_API_KEY.", show_default=False)] = None,
    api_key_file: Annotated[Path | None, typer.Option(
        help="Read the bearer key from this file (its first line; keep it 0600).",
        envvar="HEARTH_API_KEY_FILE", show_default=False)] = None,
    model: Annotated[str | None, typer.Option(help="Load this model at start-up (default: on first request).")] = None,
    radius: RadiusOpt = None,
    pool_: PoolOpt = False,
    peer: PeerOpt = None,
    max_memory: MaxMemOpt = None,
    yes: YesOpt = False,
    max_price: MaxPriceOpt = None,
) -> None:
    """Serve an OpenAI- and Ollama-compatible endpoint on this machine.

    The bearer key comes from HEARTH_API_KEY, --api-key-file or --api-key (others can read it in `ps`).
    With --radius public, requests the circle cannot serve go to the public swarm only with consent
    (--yes, HEARTH_PUBLIC_OK=1, or a yes remembered from `hearth run`); without it they get 403."""
    from hearth.server import launch

    if api_key is not None and api_key_file is not None:
        raise InvalidRequest("--api-key and --api-key-file both give the key; give one.")
    if api_key_file is not None:
        api_key, readable = launch.read_key_file(api_key_file)
        if readable:
            err.print(f"[yellow]warning:[/] {escape(str(api_key_file))} can be read by other users; `chmod 600` it.")
    config = public_settings(radius, yes, max_price, host=host, port=port, api_key=api_key)
    launch.check_exposure(config)  # before anything else is judged: the most important refusal
    chosen = policy(config, config.radius, pool_, peer, max_memory, public=True)
    launch.serve(config, engines(config, chosen, ask=False), model, say=say, status=err.status)
