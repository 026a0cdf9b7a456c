"""Whether a worker's greedy output is what the model would have written: the spot-check rules, pure.

A check (issue 11) has another copy of the model score the checked worker's token ids,
teacher-forced (the engine's "score" op): at each step the rank of the worker's token among the
scorer's logits (0 = the scorer's own greedy choice) and its gap below the scorer's best logit.
Two honest engines of the same digest agree token for token on the same build; across thread
counts, batch shapes or builds the float sums round differently, and where the top two logits
nearly tie the greedy choice can flip. So an output passes when every token is among the scorer's
best TOP_K, every token that is not the scorer's choice is a near-tie (gap <= TIE_GAP), and such
flips are at most FLIP_SHARE of the tokens. TIE_GAP and the flip budget are measured by
scripts/bench_verify.py (figures in docs/benchmarks.md): honest pairs whose prompts ran through
different kernels stay well inside them, while a smaller model passed off under a bigger one's
digest, or random tokens, fail every check.

A sampled job is checked by a same-seed re-run where both ends run the same sampler (the same
`Hello.sampler`): the scorer teacher-forces the worker's tokens as above and, at each step, lets
the job's sampler chain, seeded with the job's seed, pick from its own logits. An honest worker's
tokens are those picks; `replay_verdict` allows REPLAY_SHARE of them to differ (float drift can
move a draw across the boundary between two tokens), and none outside the chain's top-k.

How often a worker is checked adapts as in BOINC's adaptive replication: NEW_RATE until it has a
verified run, halving every HALF_LIFE verified checks down to MIN_RATE (a floor that rises with
past failures), back to NEW_RATE after a failure (the caller resets `streak`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TOP_K = 8
"""Ranks a check asks the scorer for; a token at rank >= TOP_K fails outright."""
TIE_GAP = 1.0
"""The largest logit gap (scorer's best minus the worker's token) accepted where the worker's token
is not the scorer's greedy choice. Measured (docs/benchmarks.md, "Spot-check verification"): two
honest SmolLM2 engines whose prompts ran through different kernels (64-token batches vs one token
per call) flipped 156 tokens over 400 outputs, at gaps of at most 0.494; a smaller model's output
under Gemma's digest flipped at a median gap of 1.93 and always had a token past 1.9 or the top 8."""
FLIP_SHARE = 0.5
"""At most this share of the scored tokens may be near-tie flips (at least one may). Drift is not
one flip and back: once two engines' caches differ, near-ties can flip again (measured: up to 3 of
12 tokens in one honest output)."""
NEW_RATE = 0.25
"""The chance a job of a worker with no verified run is checked."""
MIN_RATE = 0.02
"""The lowest check rate, for a long-verified worker that never failed."""
HALF_LIFE = 10
"""Verified checks in a row that halve a worker's check rate."""
SAMPLER_TOP_K = 40
"""The engine's sampler keeps its best 40 tokens (hearth.engine.sampling.sampler_chain): a sampled
token ranked past them was not drawn by that chain. A replay check asks for ranks up to this."""
REPLAY_SHARE = 0.1
"""At most this share of a sampled output's tokens may differ from the seeded re-run's picks (at
least one may). Measured in docs/benchmarks.md ("Drift between honest engines: threads 1 vs 2"):
two honest engines of one build, 1 and 2 threads, replayed each other's seeded replies to 200
prompts and missed 0 picks in 400; random token ids failed 200 of 200. No second build or other
hardware was available to measure drift across builds, hence the margin."""
MAX_STOP_TAIL = 64 + 256
"""Characters a stop string may cut off the end of what a worker streamed: the stop string
(Sampling.stop is at most 64 characters) and the rest of the token that completed it (at most
MAX_CHARS_PER_TOKEN)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    """"" when ok, else one sentence saying which token failed and why."""


def max_flips(n: int) -> int:
    """Near-tie flips allowed in n scored tokens."""
    return max(1, int(n * FLIP_SHARE))


def verdict(ranks: Sequence[int], gaps: Sequence[float], *, top_k: int = TOP_K) -> Verdict:
    """Judge a checked worker's tokens from the scorer's ranks and gaps (one each per token)."""
    if not ranks or len(ranks) != len(gaps):
        return Verdict(False, f"The check scored {len(ranks)} ranks and {len(gaps)} gaps; it needs one of each "
                              "per token, at least one.")
    flips = 0
    for i, (rank, gap) in enumerate(zip(ranks, gaps, strict=True)):
        if not (isinstance(gap, int | float) and math.isfinite(gap)) or gap < 0 or rank < 0:
            return Verdict(False, f"Token {i} has an impossible score (rank {rank}, gap {gap}).")
        if rank >= top_k:
            return Verdict(False, f"Token {i} is not among the scorer's best {top_k} choices.")
        if rank > 0:
            if gap > TIE_GAP:
                return Verdict(False, f"Token {i} is the scorer's choice number {rank + 1}, {gap:.3g} below its "
                                      f"best logit (a near-tie is within {TIE_GAP:g}).")
            flips += 1
    if flips > max_flips(len(ranks)):
        return Verdict(False, f"{flips} of {len(ranks)} tokens differ from the scorer's greedy choices "
                              f"(at most {max_flips(len(ranks))} near-ties may).")
    return Verdict(True, "")


def max_misses(n: int) -> int:
    """Tokens of n that may differ from a seeded re-run's picks."""
    return max(1, int(n * REPLAY_SHARE))


def replay_verdict(ids: Sequence[int], picks: Sequence[int], ranks: Sequence[int], *,
                   top_k: int = SAMPLER_TOP_K) -> Verdict:
    """Judge a sampled output (`ids`, the checked worker's tokens) from a same-seed re-run: the
    scorer's seeded `picks` and the ids' `ranks` among its logits, one each per token."""
    if not ids or len(picks) != len(ids) or len(ranks) != len(ids):
        return Verdict(False, f"The re-run returned {len(picks)} picks and {len(ranks)} ranks for {len(ids)} "
                              "tokens; it needs one of each per token, at least one.")
    for i, rank in enumerate(ranks):
        if rank >= top_k:
            return Verdict(False, f"Token {i} is not among the {top_k} tokens the sampler draws from.")
    misses = sum(p != t for p, t in zip(picks, ids, strict=True))
    if misses > max_misses(len(ids)):
        return Verdict(False, f"{misses} of {len(ids)} tokens differ from the same-seed re-run's "
                              f"(at most {max_misses(len(ids))} may).")
    return Verdict(True, "")


def text_agrees(scored: str, streamed: str, *, cut: bool = False) -> bool:
    """Whether `streamed` (the text the worker sent) is the detokenisation of the ids it sent
    (`scored`, the scorer's text of them), allowing what a stop string cut off its end.
    `cut`: the check scored only the first ids of a longer output, so the streamed text goes on."""
    if cut and streamed.startswith(scored):
        return True
    return scored.startswith(streamed) and len(scored) - len(streamed) <= MAX_STOP_TAIL


def check_rate(streak: int, failed: int) -> float:
    """The chance one finished job of a worker is spot-checked: `streak` = verified checks since
    its last failure (0: new, or just failed), `failed` = failed checks ever (raises the floor)."""
    if streak <= 0:
        return NEW_RATE
    floor = min(NEW_RATE, MIN_RATE * (1 + max(0, failed)))
    return max(floor, NEW_RATE * math.pow(0.5, streak / HALF_LIFE))
