"""The engine child's request loop: requests in, events out, up to `parallel` at once.

Generation and spot-checks (score) run as slots of one BatchDecoder, decoded together one step
at a time; a request that arrives while others stream is admitted between two steps, its prompt
evaluated one chunk per step. Embeddings run between steps on their own context. Requests beyond
the free slots wait here in arrival order (the server's queue normally keeps them from coming).

Cancels come from the reader thread as threading.Events; each is checked before every step, so
a cancelled request leaves the batch within one step.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hearth.engine.batch import BatchDecoder
from hearth.engine.batch_slot import DecodeFailed, SlotResult
from hearth.engine.events import Done, EngineEvent, Error, FinishReason, Start, Token
from hearth.engine.protocol import RequestError
from hearth.engine.score import ScoreWatch, replay_sampler, score_fields

Out = Callable[[EngineEvent], None]


@dataclass
class Running:
    """A request in the batch: what its Done needs, and a score's watcher."""

    rid: str
    n_prompt: int
    t0: float
    resumed: int = 0
    t_first: float | None = None
    t_last: float | None = None
    tokens: int = 0
    watch: ScoreWatch | None = None
    cached: int = 0
    """Prompt tokens its slot's cache already held."""


@dataclass
class Scheduler:
    """Feeds one BatchDecoder from a queue of requests; `engine` is hearth.engine.worker.Engine
    (not imported: the worker imports this module), which prepares prompts and embeds."""

    engine: Any
    decoder: BatchDecoder
    out: Out
    waiting: deque[tuple[dict[str, Any], threading.Event]] = field(default_factory=deque)
    running: dict[str, Running] = field(default_factory=dict)
    cancels: dict[str, threading.Event] = field(default_factory=dict)
    embedding: deque[tuple[str, Iterator[None]]] = field(default_factory=deque)
    """Embed requests in progress: one group of inputs per tick, between decode steps."""

    def submit(self, req: dict[str, Any], cancelled: threading.Event) -> None:
        self.waiting.append((req, cancelled))

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running and not self.embedding

    def tick(self) -> None:
        """Admit what fits, embed one group of inputs, then one decode step for everything in
        the batch (so an embed request pauses the streams by one group at a time)."""
        self._drop_cancelled()
        while self.waiting and (self.waiting[0][0].get("op") == "embed" or self.decoder.has_room()):
            req, cancelled = self.waiting.popleft()
            self._start(req, cancelled)
        self._embed_one()
        for rid in list(self.running):
            if self.cancels[rid].is_set():
                self.decoder.cancel(rid)
        if not self.running:
            return
        try:
            results = self.decoder.step()
        except DecodeFailed as exc:  # the cache is in an unknown state: fail the batch, start clean
            for rid in self.decoder.reset():
                self._end(rid)
                self.out(Error(rid, "engine_error", f"{exc}; retry the request."))
            return
        for r in results:
            self._result(r)

    def _drop_cancelled(self) -> None:
        for item in [w for w in self.waiting if w[1].is_set()]:
            self.waiting.remove(item)
            rid = str(item[0].get("id"))
            self.cancels.pop(rid, None)
            self.out(Done(rid, "cancelled", prompt_tokens=0, completion_tokens=0, ttft_ms=0.0, total_ms=0.0,
                          decode_tokens_per_s=None))

    def _start(self, req: dict[str, Any], cancelled: threading.Event) -> None:
        rid = str(req.get("id"))
        self.cancels[rid] = cancelled
        try:
            if req["op"] == "embed":
                self.embedding.append((rid, self.engine.embed_groups(req, cancelled, self.out)))
            elif req["op"] == "score":
                self._admit_score(rid, req)
            else:
                self._admit_generate(rid, req)
        except RequestError as exc:
            self._end(rid)
            self.out(Error(rid, exc.code, exc.message, exc.param))
        except (KeyError, TypeError, ValueError) as exc:
            self._end(rid)
            self.out(Error(rid, "engine_error", f"{type(exc).__name__}: {exc}"))

    def _embed_one(self) -> None:
        if not self.embedding:
            return
        rid, groups = self.embedding[0]
        try:
            next(groups)
        except StopIteration:
            self.embedding.popleft()
            self.cancels.pop(rid, None)
        except RequestError as exc:
            self.embedding.popleft()
            self.cancels.pop(rid, None)
            self.out(Error(rid, exc.code, exc.message))
        except (KeyError, TypeError, ValueError) as exc:
            self.embedding.popleft()
            self.cancels.pop(rid, None)
            self.out(Error(rid, "engine_error", f"{type(exc).__name__}: {exc}"))

    def _admit_generate(self, rid: str, req: dict[str, Any]) -> None:
        prompt, stop = self.engine._prepare(req)
        resume = [int(t) for t in req.get("resume") or []]
        max_tokens = req.get("max_tokens")
        seed = req.get("seed")
        self.decoder.admit(
            rid, prompt, max_tokens=None if max_tokens is None else max(0, int(max_tokens) - len(resume)),
            temperature=float(req.get("temperature", 0.8)), top_p=float(req.get("top_p", 0.95)),
            seed=None if seed is None else int(seed), stop=stop, forced=resume,
            grammar=None if req.get("grammar") is None else str(req["grammar"]), exact=bool(req.get("exact", True)),
            logprobs=None if req.get("logprobs") is None else int(req["logprobs"]))
        self.running[rid] = Running(rid, len(prompt), time.perf_counter(), resumed=len(resume),
                                    cached=self.decoder.last_reused)
        self.out(Start(rid, len(prompt)))
        if resume:
            # Text the lost engine had generated but not yet sent (held back for a possible stop
            # sequence): send it now, so the client misses nothing.
            full = self.decoder.detokenize(resume).decode("utf-8", errors="ignore")
            had = str(req.get("resumed_text") or "")
            if full.startswith(had) and len(full) > len(had):
                self.out(Token(rid, full[len(had):], ()))

    def _admit_score(self, rid: str, req: dict[str, Any]) -> None:
        ids, context, top_k = score_fields(req, self.engine.n_vocab)
        prompt, _ = self.engine._prepare(dict(req, op="chat" if req.get("messages") is not None else "complete"))
        watch = ScoreWatch(self.decoder, ids, len(context), top_k, replay_sampler(req))
        self.decoder.admit(rid, prompt, forced=context + ids, watch=watch, then_generate=False)
        self.running[rid] = Running(rid, len(prompt), time.perf_counter(), watch=watch)
        self.out(Start(rid, len(prompt)))

    def _end(self, rid: str) -> Running | None:
        self.cancels.pop(rid, None)
        return self.running.pop(rid, None)

    def _result(self, r: SlotResult) -> None:
        running = self.running[r.key]
        now = time.perf_counter()
        if r.sampled is not None:
            running.tokens += 1
            running.t_last = now
            running.t_first = running.t_first or now
        if r.text:  # ids without text (a stop string's) are never resumed from
            self.out(self._token(r))
        if r.finish is not None:
            self._finish(running, r.finish, now)

    def _token(self, r: SlotResult) -> Token:
        if not r.lps:
            return Token(r.key, r.text, r.ids)
        def piece(i: int) -> str:
            return self.decoder.detokenize([i]).decode("latin-1")
        return Token(r.key, r.text, r.ids, logprobs=tuple(lp for lp, _, _ in r.lps),
                     pieces=tuple(piece(i) for i in r.ids), top_logprobs=tuple(lps for _, _, lps in r.lps),
                     top_pieces=tuple(tuple(piece(i) for i in ids) for _, ids, _ in r.lps))

    def _finish(self, running: Running, finish: FinishReason, now: float) -> None:
        self._end(running.rid)
        total_ms = round((now - running.t0) * 1000, 3)
        watch = running.watch
        if watch is not None:
            if finish != "cancelled":
                self.out(watch.scored(running.rid, running.n_prompt, self.decoder))
            watch.close()
            self.out(Done(running.rid, finish, prompt_tokens=running.n_prompt, completion_tokens=len(watch.ranks),
                          ttft_ms=total_ms, total_ms=total_ms, decode_tokens_per_s=None))
            return
        first, last, n = running.t_first, running.t_last, running.tokens
        self.out(Done(
            running.rid, finish, prompt_tokens=running.n_prompt, completion_tokens=n + running.resumed,
            ttft_ms=round(((first or now) - running.t0) * 1000, 3), total_ms=total_ms,
            decode_tokens_per_s=round((n - 1) / (last - first), 3)
            if n > 1 and first is not None and last is not None and last > first else None,
            cached_tokens=running.cached,
        ))

    def cancel_all(self) -> None:
        for ev in self.cancels.values():
            ev.set()
        for _, ev in self.waiting:
            ev.set()

