"""Continuous batching: several sequences decoded together in one llama.cpp context.

`BatchDecoder` holds up to `parallel` slots (sequence ids 0..parallel-1 of one context). Each
`step()` decodes every generating slot's next token together, plus at most one prompt chunk of
one admitting slot, then samples each generating slot from its own row of logits with its own
sampler chain. Requests are admitted and cancelled between steps. Which slot's chunk rides in a
step, which sequence id a request gets and where chunks are cut are decided in
hearth.engine.batch_rules (pure).

The KV cache is not unified by default (`unified=False`): llama.cpp then gives each sequence
its own stream of n_ctx / parallel cells (rounded up to 256), as `llama-server -np N` does, and a
sequence's attention reads only its own stream, so its arithmetic does not depend on where the
other sequences' tokens lie. With `unified=True` all sequences share n_ctx cells (one may use
them all), interleaved. scripts/probe_batch.py measures what each does to greedy text: split, a
reply in a batch of 2, 4 or 8 is token for token its reply alone (and today's engine's); unified,
a few replies drift (docs/benchmarks.md, probe_batch).

A slot may be given `forced` tokens to feed after its prompt as if it had sampled them: a
failed-over reply's ids (resumed on a new engine exactly as the lost one decoded them), or the
tokens a spot-check scores (`watch` reads the logits before each). When a slot ends, its
sequence keeps its cache (split KV only): a later request whose prompt starts the same way (a
shared system prompt, a chat's earlier turns) gets that sequence and skips what it shares. An
`exact` request skips only whole chunks computed as a fresh prompt's are, so reuse changes no
result; another skips every shared token, as llama-server does (batch_rules.reusable).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from typing import Any

from hearth.engine.batch_rules import (
    Admitting,
    canonical_after,
    chunk_bounds,
    chunks_left,
    limit_for,
    pick_chunks,
    pick_seq,
)
from hearth.engine.batch_slot import DecodeFailed, Slot, SlotResult, StepInfo, Watch
from hearth.engine.events import FinishReason
from hearth.engine.logprobs import MAX_TOP, Entry, entry
from hearth.engine.protocol import RequestError
from hearth.engine.sampling import SlotSampler
from hearth.engine.textstream import TextStream

PROMPT_CHUNK = 64
"""As hearth.engine.worker.PROMPT_CHUNK (not imported: the worker module loads the CLI's
engine); a prompt is cut into the same chunks alone or in a batch."""
N_BATCH = 512
"""llama.cpp's logical and physical batch size, as llama-cpp-python's Llama sets them."""

Row = tuple[int, int, int, bool]
"""One batch row: token, position, sequence id, whether its logits are wanted."""


class BatchDecoder:
    """Up to `parallel` sequences over one llama.cpp context; not thread-safe except `cancel`."""

    def __init__(self, model: Any, *, n_ctx: int, n_threads: int, parallel: int, unified: bool = False,
                 mixed: bool = False, chunk: int = PROMPT_CHUNK, owns_model: bool = False,
                 flash_attn: bool = True) -> None:
        """`model`: a llama_cpp._internals.LlamaModel. `mixed`: the prompt chunk and the generating
        tokens in one llama_decode; otherwise the chunk is decoded first on its own, in exactly the
        shape the single-request engine gives it (llama.cpp splits a mixed batch anyway when the
        KV cache is not unified, cutting the chunk after its first token). `flash_attn`: llama.cpp's
        fused attention (llama-server's default here): a quarter faster at 4 sequences on this CPU,
        and still a reply in a batch is its reply alone (docs/benchmarks.md, probe_batch); it
        rounds differently from the unfused kernels, so every engine that must agree uses it."""
        import llama_cpp
        from llama_cpp._internals import LlamaBatch, LlamaContext

        if parallel < 1 or chunk < 1 or chunk + parallel > N_BATCH:
            raise ValueError(f"parallel {parallel} and chunk {chunk} must be >= 1 and fit a batch of {N_BATCH}")
        self._low: Any = llama_cpp
        self._model = model
        self._owns_model = owns_model
        self.parallel = parallel
        self.unified = unified
        self.mixed = mixed
        self.chunk = chunk
        self.chunks_per_step = max(1, N_BATCH // chunk)
        """Prompt chunks a step may evaluate, one per admitting request: llama.cpp's batch of
        tokens, so that a burst of requests starts together (as in llama-server)."""
        params: Any = self._low.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_seq_max = parallel
        params.n_threads = params.n_threads_batch = n_threads
        params.kv_unified = unified
        params.embeddings = False
        params.flash_attn_type = (self._low.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else self._low.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self._ctx: Any = LlamaContext(model=model, params=params, verbose=False)
        self._batch: Any = LlamaBatch(
            n_tokens=N_BATCH, embd=0, n_seq_max=1, verbose=False)
        self.n_ctx = int(self._low.llama_n_ctx(self._ctx.ctx))
        self.n_ctx_seq = int(self._low.llama_n_ctx_seq(self._ctx.ctx))
        self._slots: dict[str, Slot] = {}
        self._kept: dict[int, list[int]] = {}
        """Per free sequence, the tokens its cache still holds (a prompt and what followed it)."""
        self._canon: dict[int, int] = {}
        """Per free sequence, how many of those were computed as a fresh prompt's whole chunks."""
        self.reuse = not unified and not mixed
        """Keep and reuse prompt chunks: only where a chunk is computed in its solo shape in its
        own stream, so that a kept chunk equals a fresh one."""
        self._admitted = 0
        self.last_reused = 0
        """Prompt tokens the last admitted request found in its sequence's cache."""
        self.last = StepInfo(0, 0, 0)

    @classmethod
    def open(cls, model_path: str, *, n_ctx: int, n_threads: int, parallel: int, **kwargs: Any) -> BatchDecoder:
        """Load the GGUF on this CPU and make a decoder that owns it (closed with it)."""
        from hearth.engine.load import load_model

        return cls(load_model(model_path), n_ctx=n_ctx, n_threads=n_threads, parallel=parallel,
                   owns_model=True, **kwargs)

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """A completion prompt as the engine tokenizes it (BOS added, special tokens parsed)."""
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    def detokenize(self, ids: Sequence[int]) -> bytes:
        return bytes(self._model.detokenize(list(ids)))

    # -- slots -------------------------------------------------------------------------------
    @property
    def active(self) -> int:
        return len(self._slots)

    def has_room(self) -> bool:
        return len(self._slots) < self.parallel

    def _reserved(self) -> int:
        return sum(len(s.prompt) + s.limit for s in self._slots.values())

    def admit(self, key: str, prompt: Sequence[int], *, max_tokens: int | None = None,
              temperature: float = 0.8, top_p: float = 0.95, seed: int | None = None,
              stop: Sequence[str] = (), forced: Sequence[int] = (), watch: Watch | None = None,
              then_generate: bool = True, grammar: str | None = None, exact: bool = True,
              logprobs: int | None = None) -> int | None:
        """Give a request a slot; its prompt is evaluated by the coming steps, then its `forced`
        tokens are fed one per step (each watched first, if `watch`), then it samples (unless
        `then_generate` is False: it ends once its last forced token is watched). `exact`: reuse
        only the cache's canonical whole chunks, so that the reply is the one a fresh cache gives;
        otherwise every token the prompt shares with a free sequence's cache, its earlier replies
        included (faster for a chat's next turn; see batch_rules.reusable). `logprobs`: report
        each sampled token's logprob and that many alternatives (SlotResult.lps). Returns its
        sequence id, or None when no slot (or, unified, not enough shared cells) is free now.
        Raises RequestError for a prompt that can never fit."""
        if key in self._slots:
            raise ValueError(f"request {key!r} is already in the batch")
        tokens = [int(t) for t in prompt]
        extra = [int(t) for t in forced]
        if not tokens:
            raise RequestError("invalid_request", "The prompt is empty; give some text to complete.")
        if logprobs is not None and not 0 <= logprobs <= MAX_TOP:
            raise RequestError("invalid_request", f"top_logprobs must be 0..{MAX_TOP}, not {logprobs}.")
        if not then_generate and not extra:
            raise ValueError("a slot that does not generate needs forced tokens")
        if len(tokens) + len(extra) >= self.n_ctx_seq:
            raise RequestError(
                "context_length_exceeded",
                f"The prompt is {len(tokens) + len(extra)} tokens; each of this engine's {self.parallel} "
                f"sequences holds {self.n_ctx_seq}. Shorten the prompt or the conversation.")
        picked = pick_seq(self._kept if self.reuse else {}, {s.seq for s in self._slots.values()},
                          self.parallel, tokens, self.chunk, exact=exact, canon=self._canon)
        if picked is None:
            return None
        seq, keep = picked
        room = self.n_ctx_seq
        if self.unified:  # the cells are shared: reserve what each admitted request may use
            room = min(room, self.n_ctx - self._reserved())
            if len(tokens) + len(extra) >= room:
                return None
        chain = SlotSampler(temperature, top_p, secrets.randbits(32) if seed is None else seed,
                            grammar, self._model.vocab)
        self._low.llama_memory_seq_rm(self._ctx.memory, seq, keep, -1)
        self._kept.pop(seq, None)
        canon = self._canon.pop(seq, 0)
        limit = limit_for(max_tokens, len(tokens) + len(extra), room)
        self.last_reused = keep
        self._slots[key] = Slot(key, seq, tokens, limit, chain, TextStream(list(stop)), self._admitted,
                                fed=keep, forced=extra, watch=watch, then_generate=then_generate, reused=keep,
                                exact=exact, canon=canon, logprobs=logprobs)
        self._admitted += 1
        return seq

    def cancel(self, key: str) -> bool:
        """Mark a request cancelled; the next step frees its slot and reports it. Safe to call
        from another thread. False if the request is not in the batch."""
        slot = self._slots.get(key)
        if slot is None:
            return False
        slot.cancelled = True
        return True

    def _free(self, slot: Slot) -> None:
        """End a slot; its sequence's cache is kept for the next request to reuse (when reusing):
        the prompt it evaluated and the tokens decoded after it."""
        del self._slots[slot.key]
        if not self.reuse:
            self._low.llama_memory_seq_rm(self._ctx.memory, slot.seq, -1, -1)
            return
        fed = min(slot.fed, len(slot.prompt))
        held = slot.prompt[:fed] + (slot.decoded if fed == len(slot.prompt) else [])
        self._low.llama_memory_seq_rm(self._ctx.memory, slot.seq, len(held), -1)
        if held:
            self._kept[slot.seq] = held
            self._canon[slot.seq] = canonical_after(slot.reused, slot.canon, fed, self.chunk)

    def forget(self) -> None:
        """Drop every kept cache (the free sequences')."""
        for seq in self._kept:
            self._low.llama_memory_seq_rm(self._ctx.memory, seq, -1, -1)
        self._kept.clear()
        self._canon.clear()

    def _finish(self, slot: Slot, reason: FinishReason, sampled: int | None, text: str) -> SlotResult:
        ids, lps = tuple(slot.unsent), tuple(slot.unsent_lp)
        slot.unsent, slot.unsent_lp = [], []
        slot.sampler.close()
        self._free(slot)
        return SlotResult(slot.key, sampled, text, ids, reason, slot.generated, len(slot.prompt), slot.steps, lps)

    # -- steps -------------------------------------------------------------------------------
    def step(self) -> list[SlotResult]:
        """One decode step for every slot in the batch; results for the slots that sampled a
        token or finished in it (cancelled ones first)."""
        results = [self._finish(s, "cancelled", None, "") for s in list(self._slots.values()) if s.cancelled]
        slots = sorted(self._slots.values(), key=lambda s: s.seq)
        for s in slots:
            s.steps += 1
        admitting = [s for s in slots if s.admitting]
        picks = pick_chunks([Admitting(s.seq, s.order, chunks_left(s.fed, len(s.prompt), self.chunk), s.skipped)
                             for s in admitting], 1 if self.mixed else self.chunks_per_step)
        chunks: dict[int, tuple[Slot, list[Row]]] = {}
        for s in admitting:
            if s.seq not in picks:
                s.skipped += 1
                continue
            s.skipped = 0
            start, end = chunk_bounds(s.fed, len(s.prompt), self.chunk)
            n = len(s.prompt)
            chunks[s.seq] = (s, [(s.prompt[i], i, s.seq, i == n - 1) for i in range(start, end)])
            s.fed = end
        generating = [s for s in slots if s.pending is not None]
        gen_rows: list[Row] = [(s.pending, s.pos_of_pending(), s.seq, True) for s in generating
                               if s.pending is not None]
        self.last = StepInfo(len(gen_rows), sum(len(rows) for _, rows in chunks.values()), 0)
        to_sample: list[tuple[Slot, int]] = []  # (slot, row) of the decode just made
        if self.mixed:
            chunk_slot, chunk_rows = chunks[picks[0]] if picks else (None, [])
            self._decode(chunk_rows + gen_rows)
            self._decoded(generating)
            base = len(chunk_rows)
            if chunk_slot is not None and not chunk_slot.admitting:
                to_sample.append((chunk_slot, base - 1))
            to_sample += [(s, base + j) for j, s in enumerate(generating)]
            results += self._sample(to_sample)
        else:
            for seq in picks:  # each chunk in its own decode, in the shape a fresh prompt's has
                chunk_slot, chunk_rows = chunks[seq]
                self._decode(chunk_rows)
                if not chunk_slot.admitting:
                    results += self._sample([(chunk_slot, len(chunk_rows) - 1)])
            if gen_rows:
                self._decode(gen_rows)
                self._decoded(generating)
                results += self._sample([(s, j) for j, s in enumerate(generating)])
        return results

    @staticmethod
    def _decoded(generating: list[Slot]) -> None:
        for s in generating:
            if s.pending is not None:
                s.decoded.append(s.pending)

    def _decode(self, rows: list[Row]) -> None:
        if not rows:
            return
        b = self._batch.batch
        b.n_tokens = len(rows)
        for i, (token, pos, seq, out) in enumerate(rows):
            b.token[i] = token
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = out
        code = int(self._low.llama_decode(self._ctx.ctx, b))
        self.last = StepInfo(self.last.generating, self.last.chunk, self.last.decodes + 1)
        if code != 0:
            raise DecodeFailed(f"llama_decode returned {code} for a batch of {len(rows)} tokens")

    def logits(self, row: int) -> Any:
        """The logits of a row of the last decode (a numpy view, valid until the next step)."""
        import numpy as np

        n_vocab = int(self._low.llama_vocab_n_tokens(self._model.vocab))
        return np.ctypeslib.as_array(self._low.llama_get_logits_ith(self._ctx.ctx, row), shape=(n_vocab,))

    def sample_row(self, chain: Any, row: int) -> int:
        """What a sampler chain (sampler_chain) picks from a row of the last decode."""
        return int(self._low.llama_sampler_sample(chain.sampler, self._ctx.ctx, row))

    def _force(self, slot: Slot, row: int) -> SlotResult | None:
        """Take the slot's next forced token instead of sampling (watched first)."""
        i = slot.taken
        if slot.watch is not None:
            slot.watch(i, row)
        slot.taken += 1
        if not slot.then_generate and slot.taken == len(slot.forced):
            return self._finish(slot, "stop", None, "")
        slot.pending = slot.forced[i]
        # As if sampled: a grammar goes on from after the token (the draw's random state does not).
        slot.sampler.accept(slot.pending)
        return None

    def _sample(self, picks: list[tuple[Slot, int]]) -> list[SlotResult]:
        out = []
        for slot, row in picks:
            if slot.taken < len(slot.forced):
                forced = self._force(slot, row)
                if forced is not None:
                    out.append(forced)
                continue
            if slot.limit <= 0:
                out.append(self._finish(slot, "length", None, slot.text.finish()))
                continue
            token = slot.sampler.sample(self._ctx.ctx, row, functools.partial(self.logits, row))
            lp = None if slot.logprobs is None else entry(self.logits(row), token, slot.logprobs)
            out.append(self._accept(slot, token, lp))
        return out

    def _accept(self, slot: Slot, token: int, lp: Entry | None = None) -> SlotResult:
        """One sampled token: end of text, a stop string, the limit, or the next step's input."""
        slot.pending = None
        if self._low.llama_vocab_is_eog(self._model.vocab, token):
            return self._finish(slot, "stop", None, slot.text.finish())
        slot.generated += 1
        slot.unsent.append(token)
        if lp is not None:
            slot.unsent_lp.append(lp)
        piece, stopped = slot.text.push(self.detokenize([token]))
        if stopped:
            return self._finish(slot, "stop", token, piece)
        if slot.generated >= slot.limit:
            return self._finish(slot, "length", token, piece + slot.text.finish())
        slot.pending = token
        ids: tuple[int, ...] = ()
        lps: tuple[Entry, ...] = ()
        if piece:
            ids, slot.unsent, lps, slot.unsent_lp = tuple(slot.unsent), [], tuple(slot.unsent_lp), []
        return SlotResult(slot.key, token, piece, ids, None, slot.generated, len(slot.prompt), slot.steps, lps)

    # -- life --------------------------------------------------------------------------------
    def reset(self) -> list[str]:
        """End every slot without a result (after a failed decode) and clear the cache; the keys
        of the requests that were in the batch."""
        keys = list(self._slots)
        for slot in self._slots.values():
            slot.sampler.close()
        self._slots.clear()
        self._kept.clear()
        self._canon.clear()
        self._low.llama_memory_clear(self._ctx.memory, True)
        return keys

    def close(self) -> None:
        """Free the batch and the context (and the model, if this decoder loaded it)."""
        for slot in self._slots.values():
            slot.sampler.close()
        self._slots.clear()
        self._batch.close()
        self._ctx.close()
        if self._owns_model:
            self._model.close()

    def __enter__(self) -> BatchDecoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
