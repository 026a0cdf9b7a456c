"""What HEARTH_PROMPT_REUSE=tokens costs and buys (issue 13, item 3), in-process.

For 12 two-turn chats and 12 requests sharing one system turn, each greedy reply is computed
twice through hearth's engine (one slot): on a fresh cache (`exact`: what the default gives
whatever ran before), and after the request before it left its cache in the slot (the chat's
first turn with its reply; another request with the same system turn), reusing every shared
token (`tokens`). It counts identical replies and compares the time to the first token.

    .venv/bin/python scripts/probe_reuse.py [--tokens 32] [--threads 2] [--no-doc]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchdoc import write_section  # noqa: E402

from hearth.engine.events import EngineEvent, Token  # noqa: E402
from hearth.engine.worker import Engine  # noqa: E402
from hearth.models.pull import resolve  # noqa: E402
from hearth.models.store import ModelStore  # noqa: E402
from hearth.settings import load_settings  # noqa: E402

SYSTEM = ("You are a patient teacher. Answer in two or three plain sentences, without lists, and "
          "say when you are not sure.")
TOPICS = ["the Moon", "volcanoes", "bread", "the printing press", "rivers", "bees", "glass", "clocks",
          "the ocean", "trains", "paper", "owls"]


def reply(engine: Engine, messages: list[dict[str, str]], tokens: int, exact: bool) -> tuple[list[int], float, int]:
    """Greedy ids, seconds to the first token, and the prompt tokens the slot's cache gave."""
    ids: list[int] = []
    first: list[float] = []
    t0 = time.perf_counter()

    def out(ev: EngineEvent) -> None:
        if isinstance(ev, Token):
            if not first:
                first.append(time.perf_counter() - t0)
            ids.extend(ev.ids)

    req = {"op": "chat", "id": "r", "messages": messages, "max_tokens": tokens, "temperature": 0.0, "exact": exact}
    engine.generate(req, threading.Event(), out)
    return ids, first[0], engine.decoder.last_reused


def pair(engine: Engine, before: list[dict[str, str]], after: list[dict[str, str]],
         tokens: int) -> tuple[bool, float, float, int]:
    """`after` on a fresh cache and after `before` ran in the slot: same ids?, both TTFTs, reused."""
    engine.decoder.forget()
    fresh, t_fresh, _ = reply(engine, after, tokens, exact=True)
    engine.decoder.forget()
    reply(engine, before, tokens, exact=True)
    reused, t_reused, n = reply(engine, after, tokens, exact=False)
    return fresh == reused, t_fresh, t_reused, n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    _, path = resolve(ModelStore(load_settings().models_dir), "smollm2-135m")
    engine = Engine(str(path), 2048, args.threads, parallel=1, llama_ctx=256)
    rows: dict[str, list[tuple[bool, float, float, int]]] = {"chat": [], "system": []}
    for i, topic in enumerate(TOPICS):
        turn1 = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Tell me about {topic}."}]
        ids, _, _ = reply(engine, turn1, args.tokens, exact=True)
        answer = engine.decoder.detokenize(ids).decode("utf-8", errors="replace")
        turn2 = [*turn1, {"role": "assistant", "content": answer}, {"role": "user", "content": "Why does that matter?"}]
        rows["chat"].append(pair(engine, turn1, turn2, args.tokens))
        other = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"What is {TOPICS[i - 1]}?"}]
        rows["system"].append(pair(engine, other, turn1, args.tokens))
        print(topic, rows["chat"][-1], rows["system"][-1], flush=True)
    engine.close()
    lines = []
    for name, what in (("chat", "a chat's second turn, after its first"),
                       ("system", "a new request, after another with the same system turn")):
        r = rows[name]
        same = sum(x[0] for x in r)
        lines.append(f"| {what} | {same} of {len(r)} | {statistics.median(x[3] for x in r):.0f} | "
                     f"{statistics.median(x[1] for x in r) * 1000:.0f} | {statistics.median(x[2] for x in r) * 1000:.0f} |")
    body = f"""## Token-level prompt reuse: what it changes (`scripts/probe_reuse.py`)

`.venv/bin/python scripts/probe_reuse.py --tokens {args.tokens} --threads {args.threads}`
({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; SmolLM2-135M, one slot, greedy, {args.tokens} tokens).
Each reply on a fresh cache (what `HEARTH_PROMPT_REUSE=exact`, the default, always gives) against the
same request after the one before it left its cache in the slot, reusing every shared token
(`HEARTH_PROMPT_REUSE=tokens`, llama-server's `cache_prompt`). Identical: the same token ids.

| request | identical replies | median tokens reused | median TTFT fresh (ms) | median TTFT reusing (ms) |
|---|---|---|---|---|
{chr(10).join(lines)}
"""
    print(body)
    if not args.no_doc:
        write_section(Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md", "probe_reuse", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
