"""Scheduling decisions of the batched decoder: pure, no llama.cpp, no I/O.

The decoder (hearth.engine.batch) asks these functions which sequence id a new request gets,
which admitting request's prompt chunk rides in the next step, and where each chunk starts and
ends; so the decisions are tested without a model, and the decoder only performs them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

PATIENCE = 4
"""Steps an admitting request may be passed over for shorter prompts before it is served first."""


def free_seq(used: Collection[int], parallel: int) -> int | None:
    """The lowest sequence id not in use, or None when all `parallel` are.

    Lowest first because llama.cpp (non-unified KV cache) puts only sequences with consecutive
    ids in one micro-batch: holes in the ids cost an extra graph evaluation per step."""
    return next((s for s in range(parallel) if s not in used), None)


def common(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens two sequences share."""
    same = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        same += 1
    return same


def reusable(kept: Sequence[int], prompt: Sequence[int], chunk: int, *, exact: bool = True,
             canon: int | None = None) -> int:
    """Prompt tokens a sequence's cache can keep for `prompt`, never the whole prompt (its last
    token is evaluated again, for its logits).

    `kept`: the tokens the sequence's cache holds (a prompt, then the tokens decoded after it);
    `canon`: how many of them (whole chunks) were computed exactly as a fresh prompt's chunks are
    (default: all of them). `exact`: only whole chunks of that canonical prefix, so that reuse
    changes no result; otherwise every shared token (llama-server's prompt cache): faster, but a
    reply may then differ from the same request's on a fresh cache."""
    if not prompt:
        return 0
    if exact:
        held = kept if canon is None else kept[:canon]
        return min(common(held, prompt), len(prompt) - 1) // chunk * chunk
    return min(common(kept, prompt), len(prompt) - 1)


def canonical_after(reused: int, canon: int, fed: int, chunk: int) -> int:
    """The canonical prefix (see reusable) of a sequence after a request that reused `reused`
    tokens of a cache whose canonical prefix was `canon`, then evaluated its prompt up to `fed`.

    Its chunks are cut at multiples of `chunk`; they are computed as fresh ones only when what
    they attend to was (the reused part lies within the canonical prefix and ends on a chunk
    boundary), and only whole ones."""
    if reused <= canon and reused % chunk == 0:
        return fed // chunk * chunk
    return min(reused, canon) // chunk * chunk


def pick_seq(kept: Mapping[int, Sequence[int]], used: Collection[int], parallel: int, prompt: Sequence[int],
             chunk: int, *, exact: bool = True, canon: Mapping[int, int] | None = None) -> tuple[int, int] | None:
    """The free sequence for a new request and the prompt tokens it reuses: the one whose cache
    keeps the longest reusable prefix of the prompt (a shared system prompt, a chat's earlier
    turns; see reusable); with nothing to reuse, the lowest free id (see free_seq). None when
    none is free."""
    lowest = free_seq(used, parallel)
    if lowest is None:
        return None
    best, keep = lowest, 0
    for seq in range(parallel):
        if seq in used:
            continue
        n = reusable(kept.get(seq, ()), prompt, chunk, exact=exact,
                     canon=None if canon is None else canon.get(seq, 0))
        if n > keep:
            best, keep = seq, n
    return best, keep


def chunk_bounds(fed: int, n_prompt: int, chunk: int) -> tuple[int, int]:
    """The next prompt chunk [start, end): cut at multiples of `chunk` from position 0, as the
    single-request engine cuts it, so a prompt is always cut the same way (after a reused prefix
    that ends between two multiples, the first chunk runs to the next one)."""
    if chunk < 1 or not 0 <= fed < n_prompt:
        raise ValueError(f"no chunk left: fed {fed} of {n_prompt}, chunk {chunk}")
    return fed, min((fed // chunk + 1) * chunk, n_prompt)


def chunks_left(fed: int, n_prompt: int, chunk: int) -> int:
    """Prompt chunks still to evaluate (as chunk_bounds cuts them)."""
    if fed >= n_prompt:
        return 0
    return -(-n_prompt // chunk) - fed // chunk


@dataclass(frozen=True)
class Admitting:
    """A request whose prompt is still being evaluated, as the chunk choice sees it."""

    seq: int
    order: int
    """Admission order (smaller: admitted earlier)."""
    remaining: int
    """Prompt chunks left (at least 1)."""
    skipped: int
    """Steps since this request last had a chunk (or since admission)."""


def pick_chunk(admitting: Sequence[Admitting], patience: int = PATIENCE) -> int | None:
    """The sequence whose next prompt chunk goes into the step (at most one per step, so a long
    prompt never delays the generating sequences by more than one chunk).

    Fewest chunks left first (short prompts reach their first token soon), earlier admission on
    a tie; but a request passed over `patience` times or more goes first, the longest-waiting
    of those first, so no request waits more than patience + len(admitting) - 1 steps."""
    if not admitting:
        return None
    starved = [a for a in admitting if a.skipped >= patience]
    if starved:
        return min(starved, key=lambda a: (-a.skipped, a.order)).seq
    return min(admitting, key=lambda a: (a.remaining, a.order)).seq


def pick_chunks(admitting: Sequence[Admitting], most: int, patience: int = PATIENCE) -> list[int]:
    """The sequences whose next prompt chunk goes into the step, at most `most` and one chunk
    each (so a long prompt delays the generating sequences by one chunk a step), in pick_chunk's
    order: a burst of short prompts is evaluated together, as llama-server does, and their first
    tokens come in the same step."""
    left = list(admitting)
    picked: list[int] = []
    while left and len(picked) < most:
        seq = pick_chunk(left, patience)
        picked.append(seq)  # type: ignore[arg-type]  # not None: `left` is not empty
        left = [a for a in left if a.seq != seq]
    return picked


def limit_for(max_tokens: int | None, n_prompt: int, n_ctx_seq: int) -> int:
    """Tokens a request may generate: its max_tokens, within what its sequence's context holds."""
    room = max(0, n_ctx_seq - n_prompt)
    return room if max_tokens is None else max(0, min(room, max_tokens))
