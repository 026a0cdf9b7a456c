"""A request's state in the batched decoder (hearth.engine.batch), and what a step reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hearth.engine.events import FinishReason
from hearth.engine.logprobs import Entry
from hearth.engine.textstream import TextStream

Watch = Callable[[int, int], None]
"""Called with (i, row) before forced token i is taken: `row` is the batch row whose logits
predict it (read them with BatchDecoder.logits)."""


@dataclass
class Slot:
    """One request in the batch: its sequence, prompt, sampler, stop handling and progress."""

    key: str
    seq: int
    prompt: list[int]
    limit: int
    """Tokens it may generate (max_tokens within its sequence's context)."""
    sampler: Any
    text: TextStream
    order: int
    fed: int = 0
    """Prompt tokens evaluated so far (or kept in its sequence's cache from an earlier request)."""
    forced: list[int] = field(default_factory=list)
    """Tokens fed after the prompt as if sampled (a resumed reply's ids, a score's tokens)."""
    taken: int = 0
    """Forced tokens taken so far."""
    watch: Watch | None = None
    then_generate: bool = True
    """False: the slot ends (finish "stop") once its last forced token is watched."""
    reused: int = 0
    """Prompt tokens its sequence's cache already held at admission."""
    exact: bool = True
    """Reuse only canonical whole chunks (batch_rules.reusable), so the reply is its reply on a
    fresh cache."""
    canon: int = 0
    """The canonical prefix its sequence's cache had at admission (batch_rules.canonical_after)."""
    logprobs: int | None = None
    """Alternatives to report with each sampled token's logprob (None: no logprobs)."""
    unsent_lp: list[Entry] = field(default_factory=list)
    """The logprobs of the unsent ids."""
    decoded: list[int] = field(default_factory=list)
    """Tokens decoded after the prompt (forced and generated): with the prompt, what its
    sequence's cache holds, for the next request to reuse."""
    skipped: int = 0
    """Steps since it last had a prompt chunk (while admitting)."""
    pending: int | None = None
    """The last sampled token, to be decoded in the next step."""
    generated: int = 0
    unsent: list[int] = field(default_factory=list)
    """Generated ids whose text is still held back (a UTF-8 or stop-string prefix)."""
    cancelled: bool = False
    steps: int = 0
    """Steps taken since admission, this one included."""

    @property
    def admitting(self) -> bool:
        return self.fed < len(self.prompt)

    def pos_of_pending(self) -> int:
        """The position of the pending token: right after the prompt and the tokens before it."""
        return len(self.prompt) + self.taken + self.generated - 1


@dataclass(frozen=True)
class SlotResult:
    """What one slot did in one step: the token it sampled (None at end of text or when it
    finished without sampling), the text now safe to send and the ids that text covers (as
    events.Token carries them), and the finish reason if it ended (its slot is then free)."""

    key: str
    sampled: int | None
    text: str
    ids: tuple[int, ...]
    finish: FinishReason | None
    generated: int
    prompt_tokens: int
    steps: int
    """Steps since admission, this one included (a first token's step count is its latency)."""
    lps: tuple[Entry, ...] = ()
    """The logprobs of `ids`, when the request asked for them."""


class DecodeFailed(RuntimeError):
    """llama_decode refused a batch (no KV room, or a fatal error); the message has its code."""


@dataclass(frozen=True)
class StepInfo:
    """The shape of the last step, for benchmarks: rows decoded and llama_decode calls."""

    generating: int
    chunk: int
    decodes: int
