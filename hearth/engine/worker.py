"""The engine child process: loads one GGUF with llama-cpp-python and serves requests.

Run as `python -m hearth.engine.worker --model PATH ...`. It reads requests from stdin and
writes events to the original stdout (fd 1 is pointed at stderr so that nothing llama.cpp
prints can corrupt the protocol). It exits when stdin closes, so it never outlives its parent.
A reader thread takes cancels while the main thread generates.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from hearth.engine.protocol import OPS, ProtocolError, decode, encode
from hearth.engine.templates import template_for


@contextlib.contextmanager
def _model_params(endpoints: list[str], split: list[float] | None,
                  progress: Callable[[float], None]) -> Iterator[dict[str, Any]]:
    """Adjust the model parameters llama-cpp-python builds, for the duration of the load.

    llama-cpp-python 0.3.36 takes neither a device list nor a progress callback, and its default
    device choice leaves registered RPC devices unused (FIELD-NOTES.md); so the parameters it gets
    from `llama_model_default_params` get our NULL-terminated device list (layers on the leased RPC
    servers, and on this CPU when split gives it a share) and a load-progress callback. Yields the
    Llama keyword arguments to add.
    """
    import ctypes

    from llama_cpp import llama_cpp as low

    kwargs: dict[str, Any] = {}
    array = None
    if endpoints:
        from hearth.rpc_pool.native import add_servers, cpu_device

        devices = add_servers(endpoints)
        shares = list(split) if split else [1.0] * len(devices)
        if len(shares) == len(devices) + 1:
            devices.append(cpu_device())  # the last share is this machine's
        elif len(shares) != len(devices):
            raise ValueError(f"{len(shares)} split shares for {len(devices)} RPC devices")
        array = (ctypes.c_void_p * (len(devices) + 1))(*devices, None)
        kwargs = {"n_gpu_layers": -1, "tensor_split": shares}

    def on_progress(fraction: float, _user: Any) -> bool:
        progress(fraction)
        return True  # keep loading

    callback = low.llama_progress_callback(on_progress)
    original = low.llama_model_default_params

    def adjusted() -> Any:
        params = original()
        if array is not None:
            params.devices = ctypes.cast(array, ctypes.c_void_p)
        params.progress_callback = callback
        return params

    low.llama_model_default_params = adjusted  # what llama.py calls
    try:
        yield kwargs
    finally:
        low.llama_model_default_params = original


class Emitter:
    """Writes one event per line to the protocol pipe; both threads share it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, msg: dict[str, Any]) -> None:
        data = encode(msg)
        with self._lock:
            self._stream.write(data)
            self._stream.flush()


class RequestError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Engine:
    def __init__(self, model_path: str, n_ctx: int, n_threads: int, seed: int,
                 rpc: list[str] | None = None, split: list[float] | None = None,
                 progress: Callable[[float], None] | None = None) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format

        self._llama_cpp = llama_cpp
        self.model_path = model_path
        self.n_threads = n_threads
        outer = self

        class CountingLlama(llama_cpp.Llama):
            """Records the generated token ids, which streaming responses do not report."""

            def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Iterator[int]:  # type: ignore[override]
                for tok in super().generate(tokens, *args, **kwargs):
                    if not llama_cpp.llama_vocab_is_eog(self._model.vocab, tok):
                        outer.generated.append(int(tok))
                    yield tok

        with _model_params(rpc or [], split, progress or (lambda _: None)) as placement:
            self.llm = CountingLlama(
                model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                seed=seed, verbose=False, **placement,
            )
        self.n_ctx = self.llm.n_ctx()
        self.generated: list[int] = []
        self._embedder: Any = None
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

    # -- requests ------------------------------------------------------------------------
    def _check_fits(self, n_prompt: int) -> None:
        if n_prompt >= self.n_ctx:
            raise RequestError(
                "context_length_exceeded",
                f"The prompt is {n_prompt} tokens; the context window is {self.n_ctx}. "
                "Shorten the prompt or the conversation.",
            )

    def _prepare(self, req: dict[str, Any]) -> tuple[Any, list[str], Any]:
        """Prompt (text or tokens), stop strings and stopping criteria, as create_chat_completion does."""
        stop = list(req.get("stop") or [])
        if req["op"] == "chat":
            try:
                result = self.formatter(messages=req["messages"])
            except Exception as exc:  # the template is the model's own Jinja code
                raise RequestError("invalid_request", f"The chat template rejected the messages: {exc}") from exc
            tokens = self.llm.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
            self._check_fits(len(tokens))
            rstop = result.stop if isinstance(result.stop, list) else [result.stop]
            stop += [s for s in rstop + self.template_stop if s]
            return tokens, stop, result.stopping_criteria
        prompt = req["prompt"]
        n = len(self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        if n == 0:
            # llama.cpp aborts the process on an empty batch; this model adds no BOS to stand in.
            raise RequestError("invalid_request", "The prompt is empty; give some text to complete.")
        self._check_fits(n)
        return prompt, stop, None

    def _replay(self, prompt: list[int], generated: list[int]) -> None:
        """Rebuild the KV cache the way the lost engine built it: the prompt as one batch, then
        each generated token on its own. Evaluating them all as one batch would take other
        kernels and round differently, and greedy decoding can flip on a near tie."""
        self.llm.reset()  # type: ignore[no-untyped-call]
        self.llm.eval(prompt)
        for token in generated:
            self.llm.eval([token])

    def generate(self, req: dict[str, Any], cancelled: threading.Event, out: Emitter) -> None:
        """Stream one completion. Token events carry the ids they cover, so that after a failure
        the supervisor can resume on a new engine from exactly where this one stopped: a request
        with `resume` (ids generated so far) and `resumed_text` (what the client already has)."""
        rid = req["id"]
        prompt, stop, criteria = self._prepare(req)
        resume = [int(t) for t in req.get("resume") or []]
        max_tokens = req.get("max_tokens")
        n_prompt = len(prompt) if isinstance(prompt, list) else len(
            self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        if resume:
            if not isinstance(prompt, list):
                prompt = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            self._check_fits(len(prompt) + len(resume))
            self._replay(prompt, resume)
            prompt = prompt + resume
            if max_tokens is not None:
                max_tokens = max(1, max_tokens - len(resume))
        self.generated = []
        t0 = time.perf_counter()
        out({"event": "start", "id": rid, "prompt_tokens": n_prompt})
        if resume:
            # Text the dead engine had generated but not yet sent (held back for a possible stop
            # sequence): send it now, so the client misses nothing.
            full = self.llm.detokenize(resume, prev_tokens=prompt[: len(prompt) - len(resume)]).decode(
                "utf-8", errors="ignore")
            had = str(req.get("resumed_text") or "")
            if full.startswith(had) and len(full) > len(had):
                out({"event": "token", "id": rid, "text": full[len(had):], "ids": []})
        chunks: Any = self.llm.create_completion(
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=float(req.get("temperature", 0.8)),
            top_p=float(req.get("top_p", 0.95)),
            seed=req.get("seed"),
            stop=stop,
            stopping_criteria=criteria,
            stream=True,
        )
        finish = "length"
        t_first = t_last = None
        sent = 0
        try:
            for chunk in chunks:
                if cancelled.is_set():
                    finish = "cancelled"
                    break
                choice = chunk["choices"][0]
                text = choice.get("text") or ""
                if text:
                    t_last = time.perf_counter()
                    if t_first is None:
                        t_first = t_last
                    ids = self.generated[sent:]
                    sent = len(self.generated)
                    out({"event": "token", "id": rid, "text": text, "ids": ids})
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        finally:
            chunks.close()
        n = len(self.generated)
        decode_s = (t_last - t_first) if (t_first is not None and t_last is not None) else 0.0
        out({
            "event": "done", "id": rid, "finish_reason": finish,
            "prompt_tokens": n_prompt, "completion_tokens": n + len(resume),
            "ttft_ms": round(((t_first or time.perf_counter()) - t0) * 1000, 3),
            "total_ms": round((time.perf_counter() - t0) * 1000, 3),
            "decode_tokens_per_s": round((n - 1) / decode_s, 3) if n > 1 and decode_s > 0 else None,
        })

    def embed(self, req: dict[str, Any], out: Emitter) -> None:
        llama_cpp = self._llama_cpp
        if self._embedder is None:
            # A second context in embedding mode; generation keeps its own.
            self._embedder = llama_cpp.Llama(
                model_path=self.model_path, embedding=True, n_ctx=self.n_ctx,
                n_threads=self.n_threads, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                verbose=False,
            )
        inputs: list[str] = req["input"]
        counts = [len(self._embedder.tokenize(s.encode("utf-8"), add_bos=True, special=True)) for s in inputs]
        for n in counts:
            if n == 0:
                raise RequestError("invalid_request", "An input to embed is empty.")
            self._check_fits(n)
        vectors = self._embedder.embed(inputs, normalize=True)
        out({"event": "embedding", "id": req["id"], "data": vectors,
                          "prompt_tokens": sum(counts)})


def _reader(inbox: queue.Queue[dict[str, Any] | None], cancels: dict[str, threading.Event],
            out: Emitter) -> None:
    for line in sys.stdin.buffer:
        try:
            msg = decode(line, OPS, "op")
        except ProtocolError as exc:
            out({"event": "error", "id": None, "code": "protocol", "message": str(exc)})
            continue
        if msg["op"] == "cancel":
            ev = cancels.get(str(msg.get("id")))
            if ev is not None:
                ev.set()
            continue
        cancels[str(msg.get("id"))] = threading.Event()
        inbox.put(msg)
    inbox.put(None)  # stdin closed: the parent is gone


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hearth-engine")
    ap.add_argument("--model", required=True)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0xFFFFFFFF)
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
                out({"event": "progress", "fraction": round(fraction, 3)})

        engine = Engine(args.model, args.n_ctx, args.threads, args.seed, rpc=args.rpc, split=split,
                        progress=progress)
    except Exception as exc:  # report any load failure to the parent, then exit
        out({"event": "fatal", "message": f"Could not load {args.model}: {exc}"})
        return 1
    out({"event": "ready", "pid": os.getpid(), "n_ctx": engine.n_ctx,
                      "load_ms": round((time.perf_counter() - t0) * 1000, 1)})

    inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
    cancels: dict[str, threading.Event] = {}
    threading.Thread(target=_reader, args=(inbox, cancels, out), daemon=True).start()
    while (req := inbox.get()) is not None:
        rid = str(req.get("id"))
        try:
            if req["op"] == "embed":
                engine.embed(req, out)
            else:
                engine.generate(req, cancels[rid], out)
        except RequestError as exc:
            out({"event": "error", "id": rid, "code": exc.code, "message": exc.message})
        except (KeyError, TypeError, ValueError) as exc:
            out({"event": "error", "id": rid, "code": "engine_error",
                              "message": f"{type(exc).__name__}: {exc}"})
        finally:
            cancels.pop(rid, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
