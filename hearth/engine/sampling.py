"""hearth's one sampler chain, for every request the engine serves (generate, a replayed
spot-check), alone or in a batch."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from typing import Any

from hearth.engine.protocol import RequestError

MAX_GRAMMAR = 64 * 1024
"""Longest GBNF grammar a request may carry (characters)."""


def sampler_chain(temperature: float, top_p: float, seed: int) -> Any:
    """hearth's sampler chain, for every request of the engine: top-k 40, top-p, min-p 0.05,
    temperature, seeded draw; greedy at temperature 0 (as llama-cpp-python builds it by default),
    so a seed reproduces a reply. A grammar is checked beside it (SlotSampler). Named by
    hearth.engine.protocol.SAMPLER_CHAIN: change that name with the chain."""
    from llama_cpp._internals import LlamaSampler

    chain: Any = LlamaSampler()  # type: ignore[no-untyped-call]
    if temperature <= 0.0:
        chain.add_greedy()
    else:
        chain.add_top_k(40)
        chain.add_top_p(top_p, 1)
        chain.add_min_p(0.05, 1)
        chain.add_temp(temperature)
        chain.add_dist(seed)
    return chain


def grammar_rule(grammar: str, vocab: Any) -> Any:
    """A llama.cpp grammar sampler for a GBNF `grammar` over the model's `vocab` (free it with
    llama_sampler_free); RequestError for one that is too long, empty or does not parse."""
    import llama_cpp

    if len(grammar) > MAX_GRAMMAR or not grammar.strip():
        raise RequestError("invalid_request", f"A grammar must be 1 to {MAX_GRAMMAR} characters of GBNF.")
    rule = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
    if not rule:
        raise RequestError("invalid_request", "The grammar does not parse as GBNF with a `root` rule; "
                           "see llama.cpp's grammars/README.md for the syntax.")
    return rule


class SlotSampler:
    """A request's sampling in the batch: hearth's chain, and its grammar checked the way
    llama.cpp's own samplers do (common/sampling.cpp): the chain draws from the whole vocabulary,
    and only when the grammar refuses that token is the grammar applied to every candidate and
    the draw made again from what it allows. Masking 49k candidates through the grammar at every
    step (the grammar first in the chain) made constrained replies several times slower."""

    def __init__(self, temperature: float, top_p: float, seed: int, grammar: str | None, vocab: Any) -> None:
        import llama_cpp

        self._low: Any = llama_cpp
        self.rule: Any = None if grammar is None else grammar_rule(grammar, vocab)
        self.chain = sampler_chain(temperature, top_p, seed)
        self._one: Any = None
        self._all: Any = None

    def sample(self, ctx: Any, row: int, logits: Callable[[], Any]) -> int:
        """The token for a row of the last decode (accepted by the chain and the grammar);
        `logits` gives the row's logits, read only when the grammar refuses the first draw."""
        low = self._low
        token = int(low.llama_sampler_sample(self.chain.sampler, ctx, row))
        if self.rule is None:
            return token
        if not self._allowed(token):
            from llama_cpp._internals import LlamaTokenDataArray

            row_logits = logits()
            if self._all is None:
                self._all = LlamaTokenDataArray(n_vocab=len(row_logits))
            self._all.copy_logits(row_logits)
            candidates = ctypes.byref(self._all.candidates)
            low.llama_sampler_apply(self.rule, candidates)
            low.llama_sampler_apply(self.chain.sampler, candidates)
            token = int(self._all.candidates_data.id[self._all.candidates.selected])
        low.llama_sampler_accept(self.rule, token)
        return token

    def _allowed(self, token: int) -> bool:
        low = self._low
        if self._one is None:
            self._one = (low.llama_token_data * 1)()
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 1.0, 0.0
        array = low.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        low.llama_sampler_apply(self.rule, ctypes.byref(array))
        return bool(math.isfinite(self._one[0].logit))

    def accept(self, token: int) -> None:
        """A token taken without sampling (a resumed reply's): the grammar goes on from after it."""
        self._low.llama_sampler_accept(self.chain.sampler, token)
        if self.rule is not None:
            self._low.llama_sampler_accept(self.rule, token)

    def close(self) -> None:
        self.chain.close()
        if self.rule is not None:
            self._low.llama_sampler_free(self.rule)
            self.rule = None
