"""Embedding vectors cut to fewer dimensions (OpenAI's and Ollama's `dimensions`): the first
`dimensions` components, scaled back to unit length, as Matryoshka-trained models expect."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hearth.errors import InvalidRequest


def shorten(vectors: Sequence[Sequence[float]], dimensions: int | None) -> list[list[float]]:
    """Each vector's first `dimensions` components, renormalized (unchanged when None). InvalidRequest
    when the model's vectors are shorter than asked."""
    if dimensions is None:
        return [list(v) for v in vectors]
    out: list[list[float]] = []
    for v in vectors:
        if dimensions > len(v):
            raise InvalidRequest(f"dimensions is {dimensions}, but this model's embeddings have {len(v)}; "
                                 f"ask for {len(v)} or fewer.", param="dimensions")
        head = list(v[:dimensions])
        norm = math.sqrt(math.fsum(x * x for x in head))
        out.append([x / norm for x in head] if norm > 0 else head)
    return out
