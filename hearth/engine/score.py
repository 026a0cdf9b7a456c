"""The engine's "score" op: where given tokens rank among this model's logits, for spot-checks.

A spot-check (issue 11) re-runs another worker's greedy output under this engine's copy of the
model, teacher-forced: the prompt is evaluated exactly as `generate` evaluates it (same template,
same chunks), then each given token in turn. Before each token the logits of the last position are
read (the ones generate's sampler reads) and the token's rank among them (0 = the greedy choice,
ties counted in its favour; capped at top_k) and its gap below the best logit are recorded; then
the token is evaluated, one per call as generate decodes. hearth.public_swarm.verify judges them.

A sampled job is re-run with its seed instead (`replay`: the request's temperature, top_p and
seed): the same sampler chain generate builds, seeded alike, is asked at each step which token it
picks from these logits (`picks`). An honest worker with the same sampler streamed exactly those.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from hearth.engine.events import Done, EngineEvent, Scored, Start
from hearth.engine.protocol import RequestError
from hearth.engine.textstream import TextStream

MAX_TOP_K = 1000


def rank_and_gap(logits: Any, token: int, top_k: int) -> tuple[int, float]:
    """The token's rank among `logits` (how many are strictly higher, capped at top_k) and the
    best logit minus its own (>= 0)."""
    mine = float(logits[token])
    best = float(logits.max())
    rank = int((logits > mine).sum())
    return min(rank, top_k), max(0.0, best - mine)


def _fields(req: dict[str, Any]) -> tuple[list[int], list[int], int]:
    """The ids to score, the context ids (what earlier workers streamed before them), top_k."""
    try:
        ids = [int(t) for t in req["token_ids"]]
        context = [int(t) for t in req.get("context") or []]
        top_k = int(req.get("top_k", 8))
    except (KeyError, TypeError, ValueError) as exc:
        raise RequestError("invalid_request", f"A score request needs token_ids (integers): {exc}") from exc
    if req.get("replay") and req.get("seed") is None:
        raise RequestError("invalid_request", "A replay (a sampled job's re-run) needs the job's seed.")
    if not ids:
        raise RequestError("invalid_request", "A score request needs at least one token id.")
    if not 1 <= top_k <= MAX_TOP_K:
        raise RequestError("invalid_request", f"top_k must be 1..{MAX_TOP_K}, not {top_k}.")
    return ids, context, top_k


def _replay_sampler(engine: Any, req: dict[str, Any]) -> Any:
    """generate's sampler for the request's temperature, top_p and seed, or None (no replay)."""
    if not req.get("replay"):
        return None
    try:
        return engine._sampler(float(req.get("temperature", 0.8)), float(req.get("top_p", 0.95)),
                               int(req["seed"]))
    except (TypeError, ValueError) as exc:
        raise RequestError("invalid_request", f"A replay's temperature, top_p and seed must be numbers: {exc}") from exc


def score(engine: Any, req: dict[str, Any], cancelled: threading.Event, out: Callable[[EngineEvent], None]) -> None:
    """`engine` is hearth.engine.worker.Engine (not imported: worker imports this module).
    Emit Start, Scored (unless cancelled) and Done for one score request: `prompt` or
    `messages` as for generate, `token_ids`, `top_k`, optional `context` ids evaluated first."""
    import numpy as np

    llama_cpp = engine._llama_cpp
    rid = str(req["id"])
    ids, context, top_k = _fields(req)
    n_vocab = llama_cpp.llama_vocab_n_tokens(engine._vocab)
    bad = [t for t in ids + context if not 0 <= t < n_vocab]
    if bad:
        raise RequestError("invalid_request", f"Token id {bad[0]} is not in this model's vocabulary of {n_vocab}.")
    prompt, _ = engine._prepare(dict(req, op="chat" if req.get("messages") is not None else "complete"))
    engine._check_fits(len(prompt) + len(context) + len(ids))
    t0 = time.perf_counter()
    out(Start(rid, len(prompt)))
    ranks: list[int] = []
    gaps: list[float] = []
    picks: list[int] = []
    sampler = _replay_sampler(engine, req)
    ready = engine._evaluate(prompt, cancelled)
    for token in context:
        if not ready or cancelled.is_set():
            ready = False
            break
        engine.llm.eval([token])
    text = TextStream([])
    pieces: list[str] = []
    for i, token in enumerate(ids):
        if not ready or cancelled.is_set():
            ready = False
            break
        pointer = llama_cpp.llama_get_logits_ith(engine.llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,))
        rank, gap = rank_and_gap(logits, token, top_k)
        ranks.append(rank)
        gaps.append(round(gap, 4))
        if sampler is not None:  # after the rank: the logits are read before the chain touches them
            picks.append(int(sampler.sample(engine.llm._ctx, -1)))
        pieces.append(text.push(engine.llm.detokenize([token]))[0])
        if i + 1 < len(ids):
            engine.llm.eval([token])
    total_ms = round((time.perf_counter() - t0) * 1000, 3)
    if ready:
        pieces.append(text.finish())
        out(Scored(rid, len(prompt), tuple(ranks), tuple(gaps), "".join(pieces),
                   None if sampler is None else tuple(picks)))
    out(Done(rid, "stop" if ready else "cancelled", prompt_tokens=len(prompt), completion_tokens=len(ranks),
             ttft_ms=total_ms, total_ms=total_ms, decode_tokens_per_s=None))
