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


def reusable(kept: Sequence[int], prompt: Sequence[int], chunk: int) -> int:
    """Prompt tokens a sequence's cache can keep for `prompt`: the whole chunks it shares with
    what the sequence holds (`kept`, itself whole chunks), never the whole prompt (its last token
    is evaluated again, for its logits)."""
    same = 0
    for a, b in zip(kept, prompt, strict=False):
        if a != b:
            break
        same += 1
    return min(same, len(prompt) - 1) // chunk * chunk if prompt else 0


def pick_seq(kept: Mapping[int, Sequence[int]], used: Collection[int], parallel: int, prompt: Sequence[int],
             chunk: int) -> tuple[int, int] | None:
    """The free sequence for a new request and the prompt tokens it reuses: the one whose cache
    keeps the longest whole-chunk prefix of the prompt (a shared system prompt, a chat's earlier
    turns); with nothing to reuse, the lowest free id (see free_seq). None when none is free."""
    lowest = free_seq(used, parallel)
    if lowest is None:
        return None
    best, keep = lowest, 0
    for seq in range(parallel):
        if seq in used:
            continue
        n = reusable(kept.get(seq, ()), prompt, chunk)
        if n > keep:
            best, keep = seq, n
    return best, keep


def chunk_bounds(fed: int, n_prompt: int, chunk: int) -> tuple[int, int]:
    """The next prompt chunk [start, end): aligned at position 0 in steps of `chunk`, as the
    single-request engine evaluates it, so a prompt is always cut the same way.

    `fed` (tokens already evaluated) is a multiple of `chunk` or the whole prompt."""
    if chunk < 1 or not 0 <= fed < n_prompt:
        raise ValueError(f"no chunk left: fed {fed} of {n_prompt}, chunk {chunk}")
    if fed % chunk:
        raise ValueError(f"fed {fed} is not aligned to chunks of {chunk}")
    return fed, min(fed + chunk, n_prompt)


def chunks_left(fed: int, n_prompt: int, chunk: int) -> int:
    """Prompt chunks still to evaluate (ceiling division)."""
    return max(0, -(-(n_prompt - fed) // chunk))


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


def limit_for(max_tokens: int | None, n_prompt: int, n_ctx_seq: int) -> int:
    """Tokens a request may generate: its max_tokens, within what its sequence's context holds."""
    room = max(0, n_ctx_seq - n_prompt)
    return room if max_tokens is None else max(0, min(room, max_tokens))
