"""The engine's "score" op: where given tokens rank among this model's logits, for spot-checks.

A spot-check (issue 11) re-runs another worker's greedy output under this engine's copy of the
model, teacher-forced: the prompt is evaluated exactly as `generate` evaluates it (same template,
same chunks, a slot of the same batched decoder), then each given token in turn as its forced
token. Before each token the logits of its row are read (the ones generate's sampler reads) and
the token's rank among them (0 = the greedy choice, ties counted in its favour; capped at top_k)
and its gap below the best logit are recorded; hearth.public_swarm.verify judges them.

A sampled job is re-run with its seed instead (`replay`: the request's temperature, top_p and
seed): the same sampler chain generate builds, seeded alike, is asked at each step which token it
picks from these logits (`picks`). An honest worker with the same sampler streamed exactly those.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from hearth.engine.batch import BatchDecoder
from hearth.engine.events import EngineEvent, Scored
from hearth.engine.protocol import RequestError
from hearth.engine.sampling import sampler_chain
from hearth.engine.textstream import TextStream

MAX_TOP_K = 1000


def rank_and_gap(logits: Any, token: int, top_k: int) -> tuple[int, float]:
    """The token's rank among `logits` (how many are strictly higher, capped at top_k) and the
    best logit minus its own (>= 0)."""
    mine = float(logits[token])
    best = float(logits.max())
    rank = int((logits > mine).sum())
    return min(rank, top_k), max(0.0, best - mine)


def score_fields(req: dict[str, Any], n_vocab: int) -> tuple[list[int], list[int], int]:
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
    bad = [t for t in ids + context if not 0 <= t < n_vocab]
    if bad:
        raise RequestError("invalid_request", f"Token id {bad[0]} is not in this model's vocabulary of {n_vocab}.")
    return ids, context, top_k


def replay_sampler(req: dict[str, Any]) -> Any:
    """generate's sampler for the request's temperature, top_p and seed, or None (no replay)."""
    if not req.get("replay"):
        return None
    try:
        return sampler_chain(float(req.get("temperature", 0.8)), float(req.get("top_p", 0.95)), int(req["seed"]))
    except (TypeError, ValueError) as exc:
        raise RequestError("invalid_request", f"A replay's temperature, top_p and seed must be numbers: {exc}") from exc


class ScoreWatch:
    """A score slot's watcher (batch.Watch): forced tokens are the context ids, then the ids to
    score; for each of the latter it records rank, gap and (replay) the seeded pick."""

    def __init__(self, decoder: BatchDecoder, ids: list[int], n_context: int, top_k: int, sampler: Any) -> None:
        self.decoder, self.ids, self.n_context, self.top_k, self.sampler = decoder, ids, n_context, top_k, sampler
        self.ranks: list[int] = []
        self.gaps: list[float] = []
        self.picks: list[int] = []

    def __call__(self, i: int, row: int) -> None:
        if i < self.n_context:
            return
        rank, gap = rank_and_gap(self.decoder.logits(row), self.ids[i - self.n_context], self.top_k)
        self.ranks.append(rank)
        self.gaps.append(round(gap, 4))
        if self.sampler is not None:  # after the rank: the logits are read before the chain touches them
            self.picks.append(self.decoder.sample_row(self.sampler, row))

    def close(self) -> None:
        """Free the replay's sampler (once the slot ends, watched to the end or cancelled)."""
        if self.sampler is not None:
            self.sampler.close()

    def scored(self, rid: str, n_prompt: int, decoder: BatchDecoder) -> Scored:
        """The result once every id is watched; `text` is the ids' text as generate streams it."""
        text = TextStream([])
        pieces = [text.push(decoder.detokenize([t]))[0] for t in self.ids] + [text.finish()]
        return Scored(rid, n_prompt, tuple(self.ranks), tuple(self.gaps), "".join(pieces),
                      None if self.sampler is None else tuple(self.picks))


def score(engine: Any, req: dict[str, Any], cancelled: threading.Event, out: Callable[[EngineEvent], None]) -> None:
    """Serve one score request to its end (Start, Scored unless cancelled, Done) on `engine`
    (hearth.engine.worker.Engine), alone in its batch: the tests' and scripts' way in."""
    engine.generate(dict(req, op="score"), cancelled, out)
