"""The engine child process: loads one GGUF with llama-cpp-python and serves requests.

Run as `python -m hearth.engine.worker --model PATH ...`. It reads requests from stdin and
writes events to the original stdout (fd 1 is pointed at stderr so that nothing llama.cpp
prints can corrupt the protocol). It exits when stdin closes, so it never outlives its parent.
A reader thread takes cancels while the main thread generates.
"""

from __future__ import annotations

import argparse
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from hearth.engine.batch import sampler_chain
from hearth.engine.chat_tokens import TemplateMismatch, partition, split_rendered
from hearth.engine.events import (
    Done,
    Embedding,
    EngineEvent,
    Error,
    Fatal,
    FinishReason,
    Progress,
    Ready,
    Start,
    Token,
    Vectors,
    encode,
)
from hearth.engine.load import model_params
from hearth.engine.protocol import ProtocolError, RequestError, decode_request
from hearth.engine.score import score
from hearth.engine.templates import template_for
from hearth.engine.textstream import TextStream

PROMPT_CHUNK = 64
"""Prompt tokens evaluated per llama.cpp call, and the unit of prefix reuse (as fast per token
as 512 here; docs/benchmarks.md)."""
EMBED_GROUP = 8
"""Inputs embedded per llama.cpp call: a call has a fixed cost, and cancellation waits for one."""


class Emitter:
    """Writes one event per line to the protocol pipe; both threads share it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: EngineEvent) -> None:
        data = encode(event)
        with self._lock:
            self._stream.write(data)
            self._stream.flush()


class Engine:
    def __init__(self, model_path: str, n_ctx: int, n_threads: int,
                 rpc: list[str] | None = None, split: list[float] | None = None,
                 progress: Callable[[float], None] | None = None) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format

        self._llama_cpp = llama_cpp
        self.model_path = model_path
        self.n_threads = n_threads
        self.chunk = PROMPT_CHUNK
        """Prompt tokens per llama.cpp call; scripts/bench_verify.py sets others to measure drift."""
        with model_params(rpc or [], split, progress or (lambda _: None)) as placement:
            self.llm = llama_cpp.Llama(
                model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                verbose=False, **placement,
            )
        self.n_ctx = self.llm.n_ctx()
        self._vocab = self.llm._model.vocab
        self._embedder: Any = None
        self._specials: tuple[list[str], list[int]] | None = None
        self._chunks: list[int] = []
        """Prompt tokens whose KV entries the cache holds, computed as whole aligned chunks."""
        template = template_for(self.llm.metadata)
        self.template_stop = list(template.stop)
        eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
        model = self.llm._model
        self.formatter = llama_chat_format.Jinja2ChatFormatter(
            template=template.source,
            eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )

    # -- prompts ---------------------------------------------------------------------------
    def _check_fits(self, n_prompt: int) -> None:
        if n_prompt >= self.n_ctx:
            raise RequestError(
                "context_length_exceeded",
                f"The prompt is {n_prompt} tokens; the context window is {self.n_ctx}. "
                "Shorten the prompt or the conversation.",
            )

    def _special_tokens(self) -> tuple[list[str], list[int]]:
        """Texts and ids of the tokens llama.cpp parses out of text (control, user-defined)."""
        if self._specials is None:
            low = self._llama_cpp
            mask = low.LLAMA_TOKEN_ATTR_CONTROL | low.LLAMA_TOKEN_ATTR_USER_DEFINED | low.LLAMA_TOKEN_ATTR_UNKNOWN
            texts, ids = [], []
            for tid in range(low.llama_vocab_n_tokens(self._vocab)):
                if low.llama_vocab_get_attr(self._vocab, tid) & mask:
                    text = (low.llama_vocab_get_text(self._vocab, tid) or b"").decode("utf-8", "replace")
                    if text:
                        texts.append(text)
                        ids.append(tid)
            self._specials = (texts, ids)
        return self._specials

    def _chat_prompt(self, messages: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
        """Token ids of the rendered conversation, message text never parsed for special tokens;
        and the template's stop strings."""
        def render(contents: list[str]) -> str:
            msgs: Any = [dict(m, content=c) for m, c in zip(messages, contents, strict=True)]
            return str(self.formatter(messages=msgs).prompt)

        try:
            result = self.formatter(messages=cast(Any, messages))
            fragments = split_rendered(render, [str(m.get("content") or "") for m in messages],
                                       real=str(result.prompt))
        except TemplateMismatch as exc:
            raise RequestError("invalid_request", f"The model's chat template cannot keep message text "
                               f"apart from its control tokens ({exc}).") from exc
        except Exception as exc:  # the template is the model's own Jinja code
            raise RequestError("invalid_request", f"The chat template rejected the messages: {exc}") from exc
        texts, ids = self._special_tokens()
        tokens: list[int] = []
        if not result.added_special:
            tokens += self.llm.tokenize(b"", add_bos=True, special=False)
        for part in partition(fragments, texts):
            if isinstance(part, int):
                tokens.append(ids[part])
            else:
                tokens += self.llm.tokenize(part.encode("utf-8"), add_bos=False, special=False)
        rstop = result.stop if isinstance(result.stop, list) else [result.stop]
        return tokens, [s for s in rstop + self.template_stop if s]

    def _prepare(self, req: dict[str, Any]) -> tuple[list[int], list[str]]:
        """Prompt tokens and stop strings. A raw completion prompt is the client's own template
        text, so special tokens in it are parsed (as llama.cpp's server does)."""
        stop = list(req.get("stop") or [])
        if req["op"] == "chat":
            tokens, template_stop = self._chat_prompt(req["messages"])
            stop += template_stop
        else:
            tokens = self.llm.tokenize(str(req["prompt"]).encode("utf-8"), add_bos=True, special=True)
        if not tokens:
            # llama.cpp aborts the process on an empty batch; this model adds no BOS to stand in.
            raise RequestError("invalid_request", "The prompt is empty; give some text to complete.")
        self._check_fits(len(tokens))
        return tokens, stop

    def _sampler(self, temperature: float, top_p: float, seed: int) -> Any:
        """A fresh chain per request (hearth.engine.batch.sampler_chain: the one chain the batched
        decoder uses too, so a request samples the same tokens alone or in a batch)."""
        return sampler_chain(temperature, top_p, seed)

    def _evaluate(self, tokens: list[int], cancelled: threading.Event) -> bool:
        """Evaluate the prompt in chunks of PROMPT_CHUNK tokens aligned at position 0, reusing
        the whole chunks the previous prompt left in the KV cache; cancellable between chunks.

        Always the same chunks for the same prompt: the kernels for another batch shape round
        differently, and greedy text could then depend on what ran before (llama-cpp-python's
        own prefix reuse evaluates whatever suffix is left in one batch). A reused chunk was
        computed exactly as a fresh one would be, so reuse changes no result.
        """
        size = self.chunk
        keep = 0
        for cached, token in zip(self._chunks, tokens, strict=False):
            if cached != token:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1) // size * size  # at least one token is evaluated, for logits
        self._chunks = tokens[:keep]
        self.llm.n_tokens = keep  # eval() drops the cache beyond n_tokens
        for start in range(keep, len(tokens), size):
            if cancelled.is_set():
                return False
            chunk = tokens[start:start + size]
            self.llm.eval(chunk)
            if len(chunk) == size:  # a partial chunk is evaluated in another shape than a whole one
                self._chunks = tokens[:start + size]
        return True

    # -- requests ----------------------------------------------------------------------------
    def generate(self, req: dict[str, Any], cancelled: threading.Event, out: Emitter) -> None:
        """Stream one completion, one token per decode step, checking for cancellation at each.

        Token events carry the ids they cover, so that after a failure the supervisor can resume
        on a new engine from exactly where this one stopped: a request with `resume` (ids
        generated so far) and `resumed_text` (what the client already has)."""
        rid = str(req["id"])
        prompt, stop = self._prepare(req)
        n_prompt = len(prompt)
        resume = [int(t) for t in req.get("resume") or []]
        self._check_fits(n_prompt + len(resume))
        room = self.n_ctx - n_prompt - len(resume)
        max_tokens = req.get("max_tokens")
        limit = room if max_tokens is None else min(room, max(0, int(max_tokens) - len(resume)))
        seed = req.get("seed")
        sampler = self._sampler(float(req.get("temperature", 0.8)), float(req.get("top_p", 0.95)),
                                secrets.randbits(32) if seed is None else int(seed))
        t0 = time.perf_counter()
        out(Start(rid, n_prompt))
        # The prompt as one run of batches, then each generated token on its own: a resumed
        # reply rebuilds the lost engine's KV cache exactly as that engine built it.
        ready = self._evaluate(prompt, cancelled)
        for token in resume:
            if not ready or cancelled.is_set():
                ready = False
                break
            self.llm.eval([token])
        if resume and ready:
            # Text the dead engine had generated but not yet sent (held back for a possible stop
            # sequence): send it now, so the client misses nothing.
            full = self.llm.detokenize(resume).decode("utf-8", errors="ignore")
            had = str(req.get("resumed_text") or "")
            if full.startswith(had) and len(full) > len(had):
                out(Token(rid, full[len(had):], ()))
        finish, n, stats = self._decode(rid, sampler, stop, limit, cancelled if ready else None, out)
        out(Done(
            rid, finish, prompt_tokens=n_prompt, completion_tokens=n + len(resume),
            ttft_ms=round(((stats[0] or time.perf_counter()) - t0) * 1000, 3),
            total_ms=round((time.perf_counter() - t0) * 1000, 3),
            decode_tokens_per_s=round((n - 1) / (stats[1] - stats[0]), 3)
            if n > 1 and stats[0] is not None and stats[1] is not None and stats[1] > stats[0] else None,
        ))

    def _decode(self, rid: str, sampler: Any, stop: list[str], limit: int, cancelled: threading.Event | None,
                out: Emitter) -> tuple[FinishReason, int, tuple[float | None, float | None]]:
        """Sample up to `limit` tokens; returns the finish reason, the tokens generated and the
        times of the first and last. `cancelled` None means the request was cancelled already."""
        if cancelled is None:
            return "cancelled", 0, (None, None)
        text = TextStream(stop)
        unsent: list[int] = []
        finish: FinishReason = "length"
        n = 0
        t_first = t_last = None
        while n < limit:
            if cancelled.is_set():
                return "cancelled", n, (t_first, t_last)
            token = sampler.sample(self.llm._ctx, -1)
            if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
                finish = "stop"
                break
            n += 1
            unsent.append(int(token))
            piece, stopped = text.push(self.llm.detokenize([token]))
            t_last = time.perf_counter()
            t_first = t_first or t_last
            if piece:
                out(Token(rid, piece, tuple(unsent)))
                unsent = []
            if stopped:
                return "stop", n, (t_first, t_last)
            if n < limit:
                self.llm.eval([token])
        tail = text.finish()
        if tail:
            out(Token(rid, tail, tuple(unsent)))
        return finish, n, (t_first, t_last)

    def embed(self, req: dict[str, Any], cancelled: threading.Event, out: Emitter) -> None:
        """Vectors in groups (one event each, so no line grows with the request), checking for
        cancellation between groups."""
        llama_cpp = self._llama_cpp
        if self._embedder is None:
            # A second context in embedding mode; generation keeps its own.
            self._embedder = llama_cpp.Llama(
                model_path=self.model_path, embedding=True, n_ctx=self.n_ctx,
                n_threads=self.n_threads, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                verbose=False,
            )
        rid = str(req["id"])
        inputs: list[str] = req["input"]
        counts = [len(self._embedder.tokenize(s.encode("utf-8"), add_bos=True, special=False)) for s in inputs]
        for i, n in enumerate(counts):
            if n == 0:
                raise RequestError("invalid_request", f"Input {i} to embed is empty.")
            self._check_fits(n)
        for i in range(0, len(inputs), EMBED_GROUP):
            if cancelled.is_set():
                return
            vectors = self._embedder.embed(inputs[i:i + EMBED_GROUP], normalize=True)
            out(Vectors(rid, i, tuple(tuple(v) for v in vectors)))
        out(Embedding(rid, sum(counts)))


def _reader(inbox: queue.Queue[dict[str, Any] | None], cancels: dict[str, threading.Event],
            out: Emitter) -> None:
    for line in sys.stdin.buffer:
        try:
            msg = decode_request(line)
        except ProtocolError as exc:
            out(Error(None, "protocol", str(exc)))
            continue
        if msg["op"] == "cancel":
            ev = cancels.get(str(msg.get("id")))
            if ev is not None:
                ev.set()
            continue
        cancels[str(msg.get("id"))] = threading.Event()
        inbox.put(msg)
    # stdin closed: the parent is gone (or stopping us). Stop the request in hand at its next
    # step rather than decoding on for nobody.
    for ev in list(cancels.values()):
        ev.set()
    inbox.put(None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hearth-engine")
    ap.add_argument("--model", required=True)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=1, help="requests decoded together (slots)")
    ap.add_argument("--rpc", action="append", default=[], help="host:port of a leased RPC server")
    ap.add_argument("--split", default=None, help="comma-separated shares: one per RPC server, then this machine")
    args = ap.parse_args(argv)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the CLI, which cancels
    out = Emitter(os.fdopen(os.dup(1), "wb"))
    os.dup2(2, 1)
    t0 = time.perf_counter()
    try:
        split = [float(x) for x in args.split.split(",")] if args.split else None
        steps = {"last": -1}

        def progress(fraction: float) -> None:
            pct = int(fraction * 100)
            if pct > steps["last"]:  # at most 101 events
                steps["last"] = pct
                out(Progress(round(fraction, 3)))

        engine = Engine(args.model, args.n_ctx, args.threads, rpc=args.rpc, split=split,
                        progress=progress)
    except Exception as exc:  # report any load failure to the parent, then exit
        out(Fatal(f"Could not load {args.model}: {exc}"))
        return 1
    out(Ready(os.getpid(), engine.n_ctx, round((time.perf_counter() - t0) * 1000, 1), parallel=1))

    inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
    cancels: dict[str, threading.Event] = {}
    threading.Thread(target=_reader, args=(inbox, cancels, out), daemon=True).start()
    while (req := inbox.get()) is not None:
        rid = str(req.get("id"))
        try:
            if req["op"] == "embed":
                engine.embed(req, cancels[rid], out)
            elif req["op"] == "score":
                score(engine, req, cancels[rid], out)
            else:
                engine.generate(req, cancels[rid], out)
        except RequestError as exc:
            out(Error(rid, exc.code, exc.message))
        except (KeyError, TypeError, ValueError) as exc:
            out(Error(rid, "engine_error", f"{type(exc).__name__}: {exc}"))
        finally:
            cancels.pop(rid, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
