"""Fill-in-the-middle prompts: a prefix and a suffix laid out with the model's own FIM tokens,
prefix-suffix-middle, as llama.cpp's server lays out /infill:

    [BOS] <fim_pre> prefix <fim_suf> suffix <fim_mid>

The model then writes the middle. Client text is never parsed for special tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hearth.engine.protocol import RequestError

NO_FIM = ("This model has no fill-in-the-middle tokens (its GGUF names no FIM prefix, suffix and middle "
          "tokens), so 'suffix' cannot be honoured: send the prompt without 'suffix', or use a code model "
          "that supports infill.")


@dataclass(frozen=True)
class FimTokens:
    pre: int
    suf: int
    mid: int

    @classmethod
    def of(cls, pre: int, suf: int, mid: int) -> FimTokens:
        """The model's FIM tokens (llama.cpp says -1 for a missing one); RequestError without all three."""
        if min(pre, suf, mid) < 0:
            raise RequestError("invalid_request", NO_FIM, "suffix")
        return cls(pre, suf, mid)


def infill_tokens(fim: FimTokens, bos: Sequence[int], prefix: Sequence[int], suffix: Sequence[int]) -> list[int]:
    """The prompt's token ids: `bos` (empty when the model adds none), then prefix-suffix-middle."""
    return [*bos, fim.pre, *prefix, fim.suf, *suffix, fim.mid]


def infill_prompt(fim: FimTokens, tokenize: Callable[[str, bool], list[int]], prefix: str, suffix: str) -> list[int]:
    """`tokenize(text, add_bos)` is the model's tokenizer, with special-token parsing off."""
    return infill_tokens(fim, tokenize("", True), tokenize(prefix, False) if prefix else [],
                         tokenize(suffix, False) if suffix else [])
