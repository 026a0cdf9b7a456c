"""Log-probabilities of sampled tokens (OpenAI's `logprobs` and `top_logprobs`): pure numpy.

They are the model's own distribution, the log-softmax of the raw logits, before temperature,
top-k/top-p or a grammar shape the draw (as OpenAI and llama-server report them): so a token a
grammar forced may show a low logprob, which says how far the grammar steered the model.
"""

from __future__ import annotations

from typing import Any

MAX_TOP = 20
"""Most alternatives a request may ask for per token (OpenAI's limit)."""

Entry = tuple[float, tuple[int, ...], tuple[float, ...]]
"""One sampled token's logprob, and the ids and logprobs of the most likely tokens, best first."""


def entry(logits: Any, chosen: int, top: int) -> Entry:
    """The chosen token's logprob and the `top` most likely tokens (0..MAX_TOP) from one row of
    logits (a numpy array over the vocabulary)."""
    import numpy as np

    if not 0 <= top <= MAX_TOP:
        raise ValueError(f"top must be 0..{MAX_TOP}, not {top}")
    row = np.asarray(logits, dtype=np.float64)
    peak = float(row.max())
    log_total = peak + float(np.log(np.exp(row - peak).sum()))
    ids: tuple[int, ...] = ()
    if top:
        best = np.argpartition(-row, top - 1)[:top] if top < row.size else np.arange(row.size)
        ids = tuple(int(i) for i in sorted(best.tolist(), key=lambda i: (-row[i], i)))
    return (float(row[chosen]) - log_total, ids, tuple(float(row[i]) - log_total for i in ids))
