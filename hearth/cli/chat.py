"""`hearth run`: one-shot replies and the interactive chat (like `ollama run`)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn

from hearth.cli.bridge import EngineBridge
from hearth.engine.events import Done, Token
from hearth.errors import HearthError
from hearth.escalation.pool import Engines, Escalating
from hearth.public_swarm.ledger.rules import format_credits
from hearth.public_swarm.sse import PublicCost

HELP = "Commands: /bye to leave, /clear to forget the conversation, /? for this help."


def _write(text: str) -> None:
    """Model text goes out verbatim: no markup, emoji codes or wrapping from rich."""
    sys.stdout.write(text)
    sys.stdout.flush()


def _messages(system: str | None, history: list[dict[str, str]]) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + history


def _load(bridge: EngineBridge, model: str, err: Console) -> None:
    with Progress("[progress.description]{task.description}", BarColumn(), TaskProgressColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(f"loading {model}", total=1.0)
        engine = bridge.call(bridge.pool.load(model, lambda fraction: bar.update(task, completed=fraction)))
    if engine is None:
        if isinstance(bridge.pool, Escalating):
            bridge.pool.agree()  # on the terminal's thread, after the progress bar is gone
        err.print(f"[dim]{model}: replies come from the public swarm[/]")
        return
    placement = bridge.pool.placement
    if placement is not None:
        split = ", ".join(f"{a.node.name}: {a.layers} layers" for a in placement.plan.assignments)
        err.print(f"[dim]{model} split across the household ({split})[/]")


def served_publicly(cost: PublicCost, pool: Engines) -> str:
    """The line that says a reply left the circle: where, who served it, what it cost."""
    where = getattr(pool, "coordinator", "the coordinator")
    workers = ", ".join(w[:16] for w in cost.workers) or "no worker named"
    return (f"served by the public swarm at {where} (worker{'s' if len(cost.workers) != 1 else ''} {workers}; "
            f"job {cost.job_id}): cost {format_credits(cost.micro_credits)} credits "
            f"at {cost.price:,} credits per million tokens")


def public_json(cost: PublicCost | None) -> dict[str, object] | None:
    if cost is None:
        return None
    return {"served_by": "public", "cost_credits": cost.micro_credits, "price": cost.price,
            "job_id": cost.job_id, "workers": list(cost.workers), "receipt": cost.receipt}


def one_shot(pool: Engines, model: str, prompt: str, system: str | None,
             sampling: dict[str, Any], as_json: bool, out: Console, err: Console) -> None:
    bridge = EngineBridge(pool)
    try:
        _load(bridge, model, err)
        parts: list[str] = []
        done: Done | None = None
        cost: PublicCost | None = None
        t0 = time.perf_counter()
        messages = _messages(system, [{"role": "user", "content": prompt}])
        for ev in bridge.stream(model, "chat", messages=messages, **sampling):
            if isinstance(ev, Token):
                parts.append(ev.text)
                if not as_json:
                    _write(ev.text)
            elif isinstance(ev, Done):
                done = ev
            elif isinstance(ev, PublicCost):
                cost = ev
        if cost is not None:
            err.print(served_publicly(cost, pool), markup=False, highlight=False)
        if as_json:
            engine = bridge.pool.engine
            out.print_json(json.dumps({
                "model": engine.config.model_name if engine else model,
                "text": "".join(parts),
                "finish_reason": done.finish_reason if done else None,
                "prompt_tokens": done.prompt_tokens if done else None,
                "completion_tokens": done.completion_tokens if done else None,
                "tokens_per_s": done.decode_tokens_per_s if done else None,
                "ttft_ms": done.ttft_ms if done else None,
                "wall_s": round(time.perf_counter() - t0, 3),
                "cost_credits": cost.micro_credits if cost else 0,
                "public": public_json(cost),
            }))
        else:
            out.print()
    finally:
        bridge.close()


def _command(text: str, history: list[dict[str, str]], out: Console) -> bool:
    """A chat's slash command; True when it ends the chat."""
    if text in ("/bye", "/exit", "/quit"):
        return True
    if text == "/clear":
        history.clear()
        out.print("Cleared the conversation.")
    elif text in ("/?", "/help"):
        out.print(HELP)
    else:
        out.print(f"Unknown command {text.split()[0]!r}. {HELP}")
    return False


def interactive(pool: Engines, model: str, system: str | None, sampling: dict[str, Any],
                out: Console, err: Console) -> None:
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    bridge = EngineBridge(pool)
    history: list[dict[str, str]] = []
    try:
        _load(bridge, model, err)
        err.print(f"[dim]{model} ready. {HELP} Ctrl-C stops a reply.[/]")
        while True:
            try:
                line = input(">>> ")
                line.encode("utf-8")  # bytes that are not UTF-8 arrive as lone surrogates
            except EOFError:
                out.print()
                return
            except KeyboardInterrupt:
                out.print("\nUse Ctrl + d or /bye to exit.")
                continue
            except UnicodeError:
                err.print("That line is not valid UTF-8 text; check the terminal's encoding and try again.")
                continue
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if _command(text, history, out):
                    return
                continue
            history.append({"role": "user", "content": text})
            reply: list[str] = []
            events = bridge.stream(model, "chat", messages=_messages(system, history), **sampling)
            try:
                for ev in events:
                    if isinstance(ev, Token):
                        reply.append(ev.text)
                        _write(ev.text)
                    elif isinstance(ev, PublicCost):
                        err.print("\n" + served_publicly(ev, pool), markup=False, highlight=False, end="")
            except KeyboardInterrupt:
                events.close()
                out.print("\n[dim](stopped)[/]", end="")
            except HearthError as exc:
                history.pop()  # the turn failed: let the person ask again
                err.print(f"\n[bold red]error:[/] {escape(exc.message)}")
                continue
            out.print("\n")
            # Keep what was shown, even a stopped reply: it is what the person saw.
            history.append({"role": "assistant", "content": "".join(reply)})
    finally:
        bridge.close()
