"""What deterministic prompt evaluation costs (issue 8, item 17).

hearth's engine evaluates every prompt in 64-token chunks aligned at position 0 and reuses only
whole chunks left in the KV cache, so that a request's greedy text does not depend on what ran
before it. This measures the price: time to first token of a chat's next turn, in one process and
one run, three ways on the same model and thread count:
  reuse    llama-cpp-python's create_completion, the previous turn's prompt cached (what hearth did)
  chunks   hearth's Engine right after the previous turn (its whole chunks reused)
  empty    hearth's Engine with nothing cached (the whole prompt evaluated)
and checks that hearth's two replies agree (they must) and whether llama-cpp-python's does.

    .venv/bin/python scripts/bench_prefix.py [--turns 6] [--rounds 5] [--threads 2]
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

TOPICS = ["the Moon", "volcanoes", "bread", "the printing press", "rivers", "bees", "glass", "clocks"]


def conversation(turns: int) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": "You are a helpful assistant who answers in two sentences."}]
    for i in range(turns):
        topic = TOPICS[i % len(TOPICS)]
        msgs.append({"role": "user", "content": f"Tell me something about {topic}."})
        msgs.append({"role": "assistant", "content": f"Here is a fact about {topic}, in two sentences. " * 6})
    msgs.append({"role": "user", "content": "Which of those did you find most interesting, and why?"})
    return msgs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    settings = load_settings()
    _, path = resolve(ModelStore(settings.models_dir), "smollm2-135m")
    engine = Engine(str(path), 4096, args.threads)
    llm = engine.llm
    msgs = conversation(args.turns)
    prompt, stop = engine._chat_prompt(msgs)
    earlier, _ = engine._chat_prompt(msgs[:-2])  # the previous turn, as a cache would hold it
    reuse_ms: list[float] = []
    fresh_ms: list[float] = []
    texts: dict[str, str] = {}

    class Out:
        def __init__(self) -> None:
            self.first: float | None = None
            self.text: list[str] = []

        def __call__(self, event: EngineEvent) -> None:
            if isinstance(event, Token):
                self.first = self.first or time.perf_counter()
                self.text.append(event.text)

    def hearth(messages: list[dict[str, str]], cached: bool) -> tuple[float, str]:
        if not cached:
            engine._chunks = []
        out = Out()
        t0 = time.perf_counter()
        engine.generate({"id": "b", "op": "chat", "messages": messages, "max_tokens": 32, "temperature": 0,
                         "top_p": 1.0, "seed": 1}, threading.Event(), out)
        return ((out.first or time.perf_counter()) - t0) * 1000, "".join(out.text)

    chunks_ms = []
    for _ in range(args.rounds):
        # reuse: leave the previous turn in llama-cpp-python's cache, then ask for the next one
        llm.reset()  # type: ignore[no-untyped-call]
        llm.eval(earlier)
        t0 = time.perf_counter()
        first = None
        parts = []
        for chunk in llm.create_completion(prompt=prompt, max_tokens=32, temperature=0, stream=True, stop=stop):
            first = first or time.perf_counter()
            parts.append(chunk["choices"][0]["text"])  # type: ignore[index]
        reuse_ms.append(((first or time.perf_counter()) - t0) * 1000)
        texts["reuse"] = "".join(parts)
        hearth(msgs[:-2], cached=False)  # the previous turn, through hearth
        ms, texts["chunks"] = hearth(msgs, cached=True)
        chunks_ms.append(ms)
        ms, texts["empty"] = hearth(msgs, cached=False)
        fresh_ms.append(ms)
    r, c, e = (statistics.median(v) for v in (reuse_ms, chunks_ms, fresh_ms))
    body = f"""## Deterministic prompt evaluation vs prefix reuse (`scripts/bench_prefix.py`)

`.venv/bin/python scripts/bench_prefix.py --turns {args.turns} --rounds {args.rounds} --threads {args.threads}`
(SmolLM2-135M Q4_1, one process, {args.threads} threads; a chat of {args.turns} earlier turns,
{len(prompt)} prompt tokens, {len(earlier)} of them the previous turn's prompt; medians of
{args.rounds} rounds).

| next turn's time to first token | ms | vs llama-cpp-python's reuse |
|---|---|---|
| llama-cpp-python's prefix reuse (hearth before) | {r:.0f} | 1.00 |
| hearth: whole 64-token chunks reused after the previous turn | {c:.0f} | {c / r:.2f} |
| hearth: nothing cached (a new engine, or another conversation ran between) | {e:.0f} | {e / r:.2f} |

hearth's two replies {'agree' if texts['chunks'] == texts['empty'] else 'DIFFER (a bug)'}; llama-cpp-python's
{'agrees with them' if texts['reuse'] == texts['empty'] else 'differs from them'} on this conversation. The
cost of determinism is the previous turn's partial last chunk (up to 63 tokens) and its reply,
evaluated again; with nothing cached, the whole conversation.
"""
    print(body)
    if not args.no_doc:
        write_section(Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md", "bench_prefix", body)
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
