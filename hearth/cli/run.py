"""`hearth run`: reply to one prompt, or chat."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from hearth.cli.common import (
    MaxMemOpt,
    MaxPriceOpt,
    PeerOpt,
    PoolOpt,
    RadiusOpt,
    YesOpt,
    engines,
    err,
    out,
    policy,
    public_settings,
    store,
    text,
)
from hearth.errors import InvalidRequest
from hearth.settings import Settings


def split_model_prompt(first: str | None, second: str | None, config: Settings) -> tuple[str, str | None]:
    """`hearth run [MODEL] [PROMPT]`: a lone argument is a model if one is known by that name."""
    from hearth.models.pull import known_model

    if first is not None and second is not None:
        return first, second
    if first is None:
        return config.default_model, None
    return (first, None) if known_model(store(config), first) else (config.default_model, first)


def run(
    model: Annotated[str | None, typer.Argument(
        help="Model alias or stored name (default: the embedded model).", show_default=False)] = None,
    prompt: Annotated[str | None, typer.Argument(
        help="Prompt; without it, an interactive chat.", show_default=False)] = None,
    max_tokens: Annotated[int | None, typer.Option(
        "--max-tokens", "-n", min=1, help="Most tokens to generate.")] = None,
    temperature: Annotated[float, typer.Option(
        min=0.0, max=2.0, help="Sampling temperature; 0 is greedy.")] = 0.8,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="Nucleus sampling.")] = 0.95,
    seed: Annotated[int | None, typer.Option(min=0, max=2**32 - 1, help="Sampling seed.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (text, token counts, tokens/s).")] = False,
    radius: RadiusOpt = None,
    pool: PoolOpt = False,
    peer: PeerOpt = None,
    max_memory: MaxMemOpt = None,
    yes: YesOpt = False,
    max_price: MaxPriceOpt = None,
) -> None:
    """Run a model: reply to PROMPT and exit, or chat interactively."""
    from hearth.cli.chat import interactive, one_shot
    from hearth.ggml.native import check_rpc_backend

    config = public_settings(radius, yes, max_price)
    chosen = policy(config, config.radius, pool, peer, max_memory, public=True)
    check_rpc_backend()
    name, given = split_model_prompt(model, prompt, config)
    if given is None and not sys.stdin.isatty():
        given = text(sys.stdin.buffer.read(), "standard input")
    for what, value in (("the prompt", given), ("--system", system)):
        if value is not None:
            text(value, what)
    if given is not None and not given.strip():
        raise InvalidRequest("The prompt is empty; give some text to reply to.")
    sampling: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p,
                                "seed": seed, "stop": []}
    pooled = engines(config, chosen, ask=True)
    if given is None:
        interactive(pooled, name, system, sampling, out, err)
    else:
        one_shot(pooled, name, given, system, sampling, as_json, out, err)
