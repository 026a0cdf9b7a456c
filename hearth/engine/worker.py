"""The engine child process: loads one GGUF with llama-cpp-python and serves requests.

Run as `python -m hearth.engine.worker --model PATH ...`. It reads requests from stdin and
writes events to the original stdout (fd 1 is pointed at stderr so that nothing llama.cpp
prints can corrupt the protocol). It exits when stdin closes, so it never outlives its parent.
A reader thread takes requests and cancels while the main thread decodes up to `--parallel`
requests together (hearth.engine.intake, then hearth.engine.scheduler over hearth.engine.batch).
"""

from __future__ import annotations

import argparse
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from hearth.engine.batch import BatchDecoder
from hearth.engine.chat_tokens import TemplateMismatch, partition, split_rendered
from hearth.engine.embed_tokens import embed_ids, token_inputs
from hearth.engine.events import (
    Embedding,
    EngineEvent,
    Error,
    Fatal,
    Progress,
    Ready,
    Vectors,
)
from hearth.engine.fim import FimTokens, infill_prompt
from hearth.engine.intake import Emitter, Inbox, read_requests, serve
from hearth.engine.load import model_params
from hearth.engine.protocol import RequestError
from hearth.engine.scheduler import Scheduler
from hearth.engine.templates import template_for
from hearth.engine.tool_prompt import native_messages, plain_messages, renders_tools

PROMPT_CHUNK = 64
"""Prompt tokens evaluated per llama.cpp call, and the unit of prefix reuse (as fast per token
as 512 here; docs/benchmarks.md)."""
LLAMA_CTX_MIN = 256
"""The Llama object's own context in the engine child, which decodes in the BatchDecoder's: the
Llama is kept for the model's metadata, template and tokenizer."""
LLAMA_BATCH_MIN = 8
"""That context's batch size."""
EMBED_GROUP = 8
"""Inputs embedded per llama.cpp call: a call has a fixed cost, and cancellation waits for one."""


class Engine:
    """One model: its prompts (templates, special tokens), its BatchDecoder of `parallel`
    sequences of n_ctx tokens each, and an embedding context made on first use.

    `llama_ctx`: the Llama object's own context (default n_ctx): the scripts that read logits
    through `llm` and `_evaluate` want the whole window; the engine child gives it LLAMA_CTX_MIN
    (its requests decode in the BatchDecoder), so that its memory is one context per slot."""

    def __init__(self, model_path: str, n_ctx: int, n_threads: int,
                 rpc: list[str] | None = None, split: list[float] | None = None,
                 progress: Callable[[float], None] | None = None, *, parallel: int = 1,
                 llama_ctx: int | None = None) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format

        self._llama_cpp = llama_cpp
        self.model_path = model_path
        self.n_threads = n_threads
        self.chunk = PROMPT_CHUNK
        """Prompt tokens per llama.cpp call; scripts/bench_verify.py sets others to measure drift."""
        with model_params(rpc or [], split, progress or (lambda _: None)) as placement:
            # The child's Llama context never decodes: a batch of LLAMA_BATCH_MIN keeps its compute
            # buffers (logits for a batch over the whole vocabulary, on the device with the output
            # head: an RPC server's lease when the model is split) from doubling the decoder's.
            batch = LLAMA_BATCH_MIN if llama_ctx else 512  # 512: Llama's default, for the scripts
            self.llm = llama_cpp.Llama(
                model_path=model_path, n_ctx=llama_ctx or n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                n_batch=batch, n_ubatch=batch, flash_attn=True, verbose=False,  # as the decoder: logits agree
                **placement,
            )
        self.decoder = BatchDecoder(self.llm._model, n_ctx=n_ctx * parallel, n_threads=n_threads,
                                    parallel=parallel, chunk=PROMPT_CHUNK)
        self.n_ctx = self.decoder.n_ctx_seq
        """Each request's context window."""
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.llm._model.vocab))
        self._vocab = self.llm._model.vocab
        self._embedder: Any = None
        self._specials: tuple[list[str], list[int]] | None = None
        self._chunks: list[int] = []
        """Prompt tokens whose KV entries the cache holds, computed as whole aligned chunks."""
        template = template_for(self.llm.metadata)
        self.template_stop = list(template.stop)
        self.template_source = template.source
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

    def _chat_prompt(self, messages: list[dict[str, Any]],
                     tools: list[dict[str, Any]] | None = None) -> tuple[list[int], list[str]]:
        """Token ids of the rendered conversation, message text never parsed for special tokens;
        and the template's stop strings. `tools` (OpenAI's function tools) go to a template that
        renders them, else into the system message as text (hearth.engine.tool_prompt)."""
        native = renders_tools(self.template_source)
        messages = native_messages(messages) if native else plain_messages(messages, tools)
        extra: dict[str, Any] = {"tools": tools} if native and tools else {}

        def render(contents: list[str]) -> str:
            msgs: Any = [dict(m, content=c) for m, c in zip(messages, contents, strict=True)]
            return str(self.formatter(messages=msgs, **extra).prompt)

        try:
            result = self.formatter(messages=cast(Any, messages), **extra)
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
            tokens, template_stop = self._chat_prompt(req["messages"], req.get("tools"))
            stop += template_stop
        elif req.get("suffix") is not None:  # fill-in-the-middle: the prompt is the prefix
            low, vocab = self._llama_cpp, self._vocab
            fim = FimTokens.of(low.llama_vocab_fim_pre(vocab), low.llama_vocab_fim_suf(vocab),
                               low.llama_vocab_fim_mid(vocab))
            tokens = infill_prompt(fim, lambda text, bos: self.llm.tokenize(text.encode("utf-8"), add_bos=bos,
                                                                            special=False),
                                   str(req["prompt"]), str(req["suffix"]))
        else:
            tokens = self.llm.tokenize(str(req["prompt"]).encode("utf-8"), add_bos=True, special=True)
        if not tokens:
            # llama.cpp aborts the process on an empty batch; this model adds no BOS to stand in.
            raise RequestError("invalid_request", "The prompt is empty; give some text to complete.")
        self._check_fits(len(tokens))
        return tokens, stop

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
    def generate(self, req: dict[str, Any], cancelled: threading.Event, out: Callable[[EngineEvent], None]) -> None:
        """Serve one request (generate or score) to its end, alone in the batch: the scripts'
        and tests' way in (a refusal is raised as RequestError); the engine child runs many at
        once through its Scheduler."""
        def emit(event: EngineEvent) -> None:
            if isinstance(event, Error):
                raise RequestError(event.code, event.message)
            out(event)

        sched = Scheduler(self, self.decoder, emit)
        sched.submit(req, cancelled)
        while not sched.idle:
            sched.tick()

    def close(self) -> None:
        """Free the decoder's context, the embedding context and the model."""
        self.decoder.close()
        if self._embedder is not None:
            self._embedder.close()
        self.llm.close()

    def embed(self, req: dict[str, Any], cancelled: threading.Event, out: Callable[[EngineEvent], None]) -> None:
        """An embed request to its end (see embed_groups)."""
        for _ in self.embed_groups(req, cancelled, out):
            pass

    def embed_groups(self, req: dict[str, Any], cancelled: threading.Event,
                     out: Callable[[EngineEvent], None]) -> Iterator[None]:
        """Vectors in groups (one event each, so no line grows with the request), pausing after
        each group (the scheduler decodes a step of the batch there) and checking for
        cancellation between groups. The inputs are checked before the first group."""
        llama_cpp = self._llama_cpp
        if self._embedder is None:
            # A second context in embedding mode; generation keeps its own.
            self._embedder = llama_cpp.Llama(
                model_path=self.model_path, embedding=True, n_ctx=self.n_ctx,
                n_threads=self.n_threads, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                verbose=False,
            )
        rid = str(req["id"])
        raw = req["input"]
        if all(isinstance(s, str) for s in raw):
            ids = [self._embedder.tokenize(s.encode("utf-8"), add_bos=True, special=False) for s in raw]
        else:  # token ids (OpenAI's embeddings API takes them)
            ids = token_inputs(raw, self.n_vocab)
        limit = min(self.n_ctx, int(self._embedder.n_batch))
        for i, seq in enumerate(ids):
            if not seq:
                raise RequestError("invalid_request", f"Input {i} to embed is empty.")
            if len(seq) > limit and not req.get("truncate"):
                raise RequestError("context_length_exceeded", f"Input {i} to embed is {len(seq)} tokens; this "
                                   f"engine embeds at most {limit}. Shorten it, or ask for truncation.")
        ids = [seq[:limit] for seq in ids]
        counts = [len(seq) for seq in ids]
        for i in range(0, len(ids), EMBED_GROUP):
            if cancelled.is_set():
                return
            vectors = embed_ids(self._embedder, ids[i:i + EMBED_GROUP])
            out(Vectors(rid, i, tuple(tuple(v) for v in vectors)))
            yield
        out(Embedding(rid, sum(counts)))


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
                        progress=progress, parallel=args.parallel, llama_ctx=LLAMA_CTX_MIN)
    except Exception as exc:  # report any load failure to the parent, then exit
        out(Fatal(f"Could not load {args.model}: {exc}"))
        return 1
    out(Ready(os.getpid(), engine.n_ctx, round((time.perf_counter() - t0) * 1000, 1),
              parallel=engine.decoder.parallel))

    inbox: Inbox = queue.Queue()
    cancels: dict[str, threading.Event] = {}
    threading.Thread(target=read_requests, args=(sys.stdin.buffer, inbox, cancels, out), daemon=True).start()
    serve(engine, inbox, cancels, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
