"""hearth's one sampler chain, for every request the engine serves (generate, a replayed
spot-check), alone or in a batch."""

from __future__ import annotations

from typing import Any

from hearth.engine.protocol import RequestError

MAX_GRAMMAR = 64 * 1024
"""Longest GBNF grammar a request may carry (characters)."""


def sampler_chain(temperature: float, top_p: float, seed: int, grammar: str | None = None,
                  vocab: Any = None) -> Any:
    """hearth's sampler chain, for every request of the engine: top-k 40, top-p, min-p 0.05,
    temperature, seeded draw; greedy at temperature 0 (as llama-cpp-python builds it by default),
    so a seed reproduces a reply. With a GBNF `grammar` (and the model's `vocab`), the grammar
    comes first and only tokens it allows are drawn. Named by hearth.engine.protocol.SAMPLER_CHAIN:
    change that name with the chain. RequestError for a grammar that does not parse."""
    import llama_cpp
    from llama_cpp._internals import LlamaSampler

    chain: Any = LlamaSampler()  # type: ignore[no-untyped-call]
    if grammar is not None:
        if len(grammar) > MAX_GRAMMAR or not grammar.strip():
            chain.close()
            raise RequestError("invalid_request", f"A grammar must be 1 to {MAX_GRAMMAR} characters of GBNF.")
        rule = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not rule:
            chain.close()
            raise RequestError("invalid_request", "The grammar does not parse as GBNF with a `root` rule; "
                               "see llama.cpp's grammars/README.md for the syntax.")
        llama_cpp.llama_sampler_chain_add(chain.sampler, rule)
    if temperature <= 0.0:
        chain.add_greedy()
    else:
        chain.add_top_k(40)
        chain.add_top_p(top_p, 1)
        chain.add_min_p(0.05, 1)
        chain.add_temp(temperature)
        chain.add_dist(seed)
    return chain
