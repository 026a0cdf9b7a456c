"""Embeddings of token-id sequences: llama-cpp-python's Llama.embed (mean pooling, normalized)
takes only text, and OpenAI's embeddings API also takes token ids (langchain sends them by
default). The same batching as Llama.embed, over ids, so text tokenized here embeds exactly
as Llama.embed would embed it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hearth.engine.protocol import RequestError


def token_inputs(raw: object, n_vocab: int) -> list[list[int]]:
    """A request's `input` as token ids: a list of ints or a list of such lists. RequestError for
    anything else, an empty sequence, or an id outside the vocabulary."""
    if isinstance(raw, list) and raw and all(isinstance(t, int) and not isinstance(t, bool) for t in raw):
        seqs: list[Any] = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(s, list) for s in raw):
        seqs = raw
    else:
        raise RequestError("invalid_request", "Token-id input must be a list of token ids or a list of such lists.")
    out: list[list[int]] = []
    for i, seq in enumerate(seqs):
        if not seq:
            raise RequestError("invalid_request", f"Input {i} to embed is empty.")
        for t in seq:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < n_vocab:
                raise RequestError("invalid_request", f"Input {i} holds {t!r}, which is not a token id of this "
                                   f"model (0 to {n_vocab - 1}).")
        out.append([int(t) for t in seq])
    return out


def embed_ids(llm: Any, inputs: Sequence[Sequence[int]]) -> list[list[float]]:
    """Mean-pooled, L2-normalized embeddings of each id sequence, in one or more decodes of
    llm's batch (`llm`: a llama_cpp.Llama made with embedding=True and mean pooling). Each
    sequence must fit the batch (the caller checks)."""
    import llama_cpp

    n_embd, n_batch, n_seq_max = llm.n_embd(), llm.n_batch, llm.context_params.n_seq_max
    data: list[list[float]] = []
    sizes: list[int] = []

    def decode() -> None:
        llm._ctx.kv_cache_clear()
        llm._ctx.decode(llm._batch)
        llm._batch.reset()
        for i in range(len(sizes)):
            ptr = llama_cpp.llama_get_embeddings_seq(llm._ctx.ctx, i)
            vector = [float(x) for x in ptr[:n_embd]]
            norm = math.sqrt(math.fsum(x * x for x in vector))  # as llama_cpp's normalize_embedding
            data.append([x / norm for x in vector] if norm > 0 else vector)
        sizes.clear()

    llm._batch.reset()
    for tokens in inputs:
        if sum(sizes) + len(tokens) > n_batch or len(sizes) >= n_seq_max:
            decode()
        llm._batch.add_sequence(list(tokens), len(sizes), True)
        sizes.append(len(tokens))
    decode()
    llm._ctx.kv_cache_clear()
    llm.reset()
    return data
